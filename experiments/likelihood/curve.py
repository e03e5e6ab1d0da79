"""Learning curves of the likelihood runs: the test bound of every snapshot, on a test subset, at a stated k.

    python experiments/likelihood/curve.py --data-root <MNIST dir> [--k 500] [--images 1000] RUN_DIR ...
    python experiments/likelihood/curve.py --plot-only       # curve.png from curve.json

Each run must have been trained with `snapshot_every_epochs=N` (checkpoints/epoch_NNNN.pt). The
subset is the first `--images` test images (the test split binarized once with the run's fixed
seed); the numbers are in fp32. The curves are for reading how far from converged a run is:
no model is selected on them (the table's number is always last.pt on the whole test set).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from vae.bounds import DECODES_PER_CALL
from vae.evaluate import evaluate_run
from vae.runs import load_run, run_data

HERE = Path(__file__).resolve().parent


def run_curve(run_dir: Path, *, k: int, images: int, data_root: str | None, batch_size: int = 100) -> dict:
    snapshots = sorted((run_dir / "checkpoints").glob("epoch_*.pt"))
    if not snapshots:
        raise SystemExit(f"error: {run_dir} has no snapshots (train it with snapshot_every_epochs=N)")
    test = None
    points = []
    for path in snapshots:
        loaded = load_run(run_dir, checkpoint=path.stem)
        if test is None:
            test = run_data(loaded, data_root=data_root).test.images[:images]
        results = evaluate_run(
            loaded.model,
            test,
            iwae_k=k,
            batch_size=batch_size,
            chunk=max(1, DECODES_PER_CALL["cpu"] // batch_size),
            seed=0,
            progress=False,
        )
        points.append(
            {
                "epoch": int(re.search(r"\d+", path.stem).group()),
                "test_subset_iwae_nll_nats": results["iwae_nll_nats"],
                "test_subset_neg_elbo_nats": results["neg_elbo_nats"],
                "active_units": results["active_units"],
            }
        )
        print(f"{run_dir.name} epoch {points[-1]['epoch']}: IWAE k={k} {results['iwae_nll_nats']:.2f} nats")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "run": run_dir.name,
        "k": k,
        "images": int(test.shape[0]),
        "points": points,
        "val_neg_elbo_nats": [row["val_neg_elbo_nats"] for row in metrics["history"]],
    }


def plot(curves: list[dict], burda: dict[str, float]) -> None:
    from vae.figures import plt, save

    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    for curve in curves:
        epochs = [point["epoch"] for point in curve["points"]]
        ax.plot(epochs, [p["test_subset_iwae_nll_nats"] for p in curve["points"]], marker="o", ms=3, label=curve["run"])
    for name, value in burda.items():
        ax.axhline(value, ls="--", lw=1, color="gray")
        ax.text(ax.get_xlim()[0], value, f" Burda et al. {name}: {value}", va="bottom", fontsize=8, color="gray")
    k, images = curves[0]["k"], curves[0]["images"]
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"test NLL bound, IWAE k={k}, first {images} test images (nats)")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, HERE / "curve.png")


BURDA = {"VAE (k=1 training)": 86.76, "IWAE k=5": 85.54}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="*")
    parser.add_argument("--data-root")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args()
    if not args.plot_only:
        curves = [run_curve(run, k=args.k, images=args.images, data_root=args.data_root) for run in args.runs]
        (HERE / "curve.json").write_text(json.dumps({"curves": curves}, indent=1) + "\n")
    plot(json.loads((HERE / "curve.json").read_text())["curves"], BURDA)


if __name__ == "__main__":
    main()

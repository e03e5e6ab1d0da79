"""Learning curves of the likelihood runs: the test bound of every snapshot, on a test subset, at a stated k.

    python experiments/likelihood/curve.py --data-root <MNIST dir> [--k 500] [--images 1000] RUN_DIR ...
    python experiments/likelihood/curve.py --merge [--last-only] --data-root <MNIST dir> RUN_DIR ...   # add runs
    python experiments/likelihood/curve.py --plot-only       # curve.png from curve.json

Each run must have been trained with `snapshot_every_epochs=N` (checkpoints/epoch_NNNN.pt). The
subset is the first `--images` test images (the test split binarized once with the run's fixed
seed); the numbers are in fp32. Each run's `last.pt` is evaluated too, so curve.png's right
panel shows the final bound against the schedule's length (runs with different
`optim.stage_divisor`), beside the full schedule's 3,280 epochs. The curves are for reading how far from converged a run is:
no model is selected on them (the table's number is always last.pt on the whole test set).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vae.bounds import DECODES_PER_CALL
from vae.evaluate import evaluate_run
from vae.runs import load_run, run_data

HERE = Path(__file__).resolve().parent


def run_curve(
    run_dir: Path, *, k: int, images: int, data_root: str | None, batch_size: int = 100, last_only: bool = False
) -> dict:
    snapshots = [] if last_only else sorted((run_dir / "checkpoints").glob("epoch_*.pt"))
    if not snapshots and not last_only:
        raise SystemExit(f"error: {run_dir} has no snapshots (train it with snapshot_every_epochs=N)")
    last = load_run(run_dir, checkpoint="last")
    test = run_data(last, data_root=data_root).test.images[:images]
    final_epoch = int(last.checkpoint["epoch"])
    names = [path.stem for path in snapshots]
    if f"epoch_{final_epoch:04d}" not in names:  # the schedule ends between two snapshots
        names.append("last")
    points = []
    for name in names:
        loaded = last if name == "last" else load_run(run_dir, checkpoint=name)
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
                "epoch": int(loaded.checkpoint["epoch"]),
                "test_subset_iwae_nll_nats": results["iwae_nll_nats"],
                "test_subset_neg_elbo_nats": results["neg_elbo_nats"],
                "active_units": results["active_units"],
            }
        )
        print(f"{run_dir.name} epoch {points[-1]['epoch']}: IWAE k={k} {results['iwae_nll_nats']:.2f} nats")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    config = last.checkpoint["config"]
    return {
        "run": run_dir.name,
        "objective": config.get("objective", {}).get("name", "elbo"),
        "model": config["model"]["name"],
        "stage_divisor": config["optim"].get("stage_divisor"),
        "epochs": final_epoch,
        "k": k,
        "images": int(test.shape[0]),
        "points": points,
        "val_neg_elbo_nats": [row["val_neg_elbo_nats"] for row in metrics["history"]],
    }


def plot(curves: list[dict], burda: dict[str, float], *, burda_epochs: int = 3280) -> None:
    """Left: the bound against epoch within each run. Right: each run's final bound against its schedule's length."""
    from vae.figures import plt, save

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    for curve in curves:
        epochs = [point["epoch"] for point in curve["points"]]
        left.plot(
            epochs, [p["test_subset_iwae_nll_nats"] for p in curve["points"]], marker="o", ms=3, label=curve["run"]
        )
    by_kind: dict[str, list[tuple[int, float]]] = {}
    for curve in curves:
        final = curve["points"][-1]
        kind = f"{curve.get('model', 'mlp')} model, {curve['objective']} objective"
        by_kind.setdefault(kind, []).append((final["epoch"], final["test_subset_iwae_nll_nats"]))
    for kind, points in sorted(by_kind.items()):
        points.sort()
        right.plot(*zip(*points), marker="o", label=f"{kind}: last.pt of each run")
    for (name, value), colour in zip(burda.items(), ("black", "dimgray")):
        left.axhline(value, ls="--", lw=1, color=colour, label=f"Burda et al. {name}: {value}")
        right.plot(
            [burda_epochs], [value], marker="*", ms=12, ls="", color=colour, label=f"Burda et al. {name}: {value}"
        )
    for ax in (left, right):
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    right.axvline(burda_epochs, ls=":", color="gray")
    k, images = curves[0]["k"], curves[0]["images"]
    label = f"test NLL bound, IWAE k={k}, first {images} test images (nats)"
    left.set(xlabel="epoch", ylabel=label, title="within each run (snapshots)")
    right.set(
        xlabel="schedule length (epochs = 3280 / stage_divisor; dotted: the full schedule)",
        ylabel=label,
        title="final bound against schedule length",
    )
    save(fig, HERE / "curve.png")


BURDA = {"VAE (k=1 training)": 86.76, "IWAE k=5": 85.54}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="*")
    parser.add_argument("--data-root")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--last-only", action="store_true", help="last.pt only (no snapshots): one point per run")
    parser.add_argument("--merge", action="store_true", help="add these runs to curve.json instead of replacing it")
    args = parser.parse_args()
    if not args.plot_only:
        kept = json.loads((HERE / "curve.json").read_text())["curves"] if args.merge else []
        if any((curve["k"], curve["images"]) != (args.k, args.images) for curve in kept):
            raise SystemExit("error: --merge needs the --k and --images of the curves already in curve.json")
        curves = [
            run_curve(run, k=args.k, images=args.images, data_root=args.data_root, last_only=args.last_only)
            for run in args.runs
        ]
        names = {curve["run"] for curve in curves}  # these runs replace their old curves
        curves = [curve for curve in kept if curve["run"] not in names] + curves
        (HERE / "curve.json").write_text(json.dumps({"curves": curves}, indent=1) + "\n")
    plot(json.loads((HERE / "curve.json").read_text())["curves"], BURDA)


if __name__ == "__main__":
    main()

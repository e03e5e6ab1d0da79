"""Learning curves of the likelihood runs: the bound of every snapshot on the run's held-out images, at a stated k.

    python experiments/likelihood/curve.py --data-root <MNIST dir> [--k 500] [--images N] RUN_DIR ...
    python experiments/likelihood/curve.py --merge [--last-only] --data-root <MNIST dir> RUN_DIR ...   # add runs
    python experiments/likelihood/curve.py --plot-only [--out PATH]   # curve.png from curve.json

Each run must have been trained with `snapshot_every_epochs=N` (checkpoints/epoch_NNNN.pt) and
with its validation split held out of the training images (`data.val_source=holdout`, the
`data.val_split` images of the run's config). The curve is evaluated on those held-out images
(the validation split, binarized once with the run's fixed seed), never on the test split:
`--images N` takes the first N of them (default: all). The numbers are in fp32. Each run's
`last.pt` is evaluated too, so curve.png's right panel shows the final bound against the
schedule's length (runs with different `optim.stage_divisor`), beside the full schedule's 3,280
epochs. The curves are for reading how far from converged a run is and for every choice; the
test split is read only by `python -m vae.evaluate run=<run> checkpoint=last ...`, once per
reported number.

curve.json also keeps the curves drawn before this rule, under a withdrawn protocol: they were
evaluated on the first 1,000 test images. Their points have the keys `test_subset_iwae_nll_nats`
and `test_subset_neg_elbo_nats` and the curve has no `split` key (read as "test"); new curves
record `"split": "val"` and their points `heldout_iwae_nll_nats` and `heldout_neg_elbo_nats`.
This script never writes a test-split curve and never drops one: without `--merge` it replaces
the held-out curves only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vae.bounds import DECODES_PER_CALL
from vae.evaluate import evaluate_run
from vae.runs import load_run, run_data

HERE = Path(__file__).resolve().parent
# The split a curve was evaluated on -> the keys of its points' bound and -ELBO.
POINT_KEYS = {
    "val": ("heldout_iwae_nll_nats", "heldout_neg_elbo_nats"),
    "test": ("test_subset_iwae_nll_nats", "test_subset_neg_elbo_nats"),  # the withdrawn protocol
}


def split_of(curve: dict) -> str:
    """The split a curve was evaluated on: "val" (held-out images), or "test" for the old curves that have no key."""
    return curve.get("split", "test")


def nll(curve: dict, point: dict) -> float:
    return point[POINT_KEYS[split_of(curve)][0]]


def split_label(curve: dict) -> str:
    images = curve["images"]
    if split_of(curve) == "val":
        return f"{images} held-out (val) images"
    return f"first {images} test images (withdrawn protocol)"


def run_curve(
    run_dir: Path,
    *,
    k: int,
    images: int | None,
    data_root: str | None,
    batch_size: int = 100,
    last_only: bool = False,
) -> dict:
    snapshots = [] if last_only else sorted((run_dir / "checkpoints").glob("epoch_*.pt"))
    if not snapshots and not last_only:
        raise SystemExit(f"error: {run_dir} has no snapshots (train it with snapshot_every_epochs=N)")
    last = load_run(run_dir, checkpoint="last")
    config = last.checkpoint["config"]
    val_source = config["data"].get("val_source", "holdout")
    if val_source != "holdout":
        raise SystemExit(
            f"error: {run_dir} was trained with data.val_source={val_source}: its validation split is the test "
            "split, and a curve never reads the test split (train it with data.val_source=holdout)"
        )
    heldout = run_data(last, data_root=data_root).val.images
    if images is not None:
        if images > heldout.shape[0]:
            raise SystemExit(f"error: --images {images}, but {run_dir} holds out {heldout.shape[0]} images")
        heldout = heldout[:images]
    final_epoch = int(last.checkpoint["epoch"])
    names = [path.stem for path in snapshots]
    if f"epoch_{final_epoch:04d}" not in names:  # the schedule ends between two snapshots
        names.append("last")
    nll_key, elbo_key = POINT_KEYS["val"]
    points = []
    for name in names:
        loaded = last if name == "last" else load_run(run_dir, checkpoint=name)
        results = evaluate_run(
            loaded.model,
            heldout,
            iwae_k=k,
            batch_size=batch_size,
            chunk=max(1, DECODES_PER_CALL["cpu"] // batch_size),
            seed=0,
            progress=False,
        )
        points.append(
            {
                "epoch": int(loaded.checkpoint["epoch"]),
                nll_key: results["iwae_nll_nats"],
                elbo_key: results["neg_elbo_nats"],
                "active_units": results["active_units"],
            }
        )
        print(
            f"{run_dir.name} epoch {points[-1]['epoch']}: IWAE k={k} {results['iwae_nll_nats']:.2f} nats "
            f"on {heldout.shape[0]} held-out images"
        )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "run": run_dir.name,
        "split": "val",
        "objective": config.get("objective", {}).get("name", "elbo"),
        "model": config["model"]["name"],
        "stage_divisor": config["optim"].get("stage_divisor"),
        "epochs": final_epoch,
        "k": k,
        "images": int(heldout.shape[0]),
        "points": points,
        "val_neg_elbo_nats": [row["val_neg_elbo_nats"] for row in metrics["history"]],
    }


def plot(curves: list[dict], burda: dict[str, float], *, out: Path, burda_epochs: int = 3280) -> None:
    """Left: the bound against epoch within each run. Right: each run's final bound against its schedule's length.

    Every line says which split it was evaluated on; the withdrawn test-subset curves are dashed.
    """
    from vae.figures import plt, save

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), layout="constrained")
    for curve in curves:
        epochs = [point["epoch"] for point in curve["points"]]
        left.plot(
            epochs,
            [nll(curve, p) for p in curve["points"]],
            marker="o",
            ms=3,
            ls="-" if split_of(curve) == "val" else "--",
            label=f"{curve['run']}, {split_label(curve)}",
        )
    by_kind: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for curve in curves:
        final = curve["points"][-1]
        kind = (f"{curve.get('model', 'mlp')} model, {curve['objective']} objective", split_of(curve))
        by_kind.setdefault(kind, []).append((final["epoch"], nll(curve, final)))
    for (kind, split), points in sorted(by_kind.items()):
        points.sort()
        where = "held-out (val) images" if split == "val" else "test subset (withdrawn protocol)"
        right.plot(
            *zip(*points), marker="o", ls="-" if split == "val" else "--", label=f"{kind}: last.pt of each run, {where}"
        )
    for (name, value), colour in zip(burda.items(), ("black", "dimgray")):
        left.axhline(value, ls=":", lw=1, color=colour, label=f"Burda et al. {name}: {value} (whole test set, k=5000)")
        right.plot(
            [burda_epochs],
            [value],
            marker="*",
            ms=12,
            ls="",
            color=colour,
            label=f"Burda et al. {name}: {value} (whole test set, k=5000)",
        )
    for ax in (left, right):
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    right.axvline(burda_epochs, ls=":", color="gray")
    ks = sorted({curve["k"] for curve in curves})
    label = f"NLL bound, IWAE k={'/'.join(map(str, ks))} (nats; split in the legend)"
    left.set(xlabel="epoch", ylabel=label, title="within each run (snapshots)")
    right.set(
        xlabel="schedule length (epochs = 3280 / stage_divisor; dotted: the full schedule)",
        ylabel=label,
        title="final bound against schedule length",
    )
    save(fig, out)


BURDA = {"VAE (k=1 training)": 86.76, "IWAE k=5": 85.54}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="*")
    parser.add_argument("--data-root")
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument(
        "--images", type=int, default=None, help="the first N held-out (validation) images (default: all of them)"
    )
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--last-only", action="store_true", help="last.pt only (no snapshots): one point per run")
    parser.add_argument(
        "--merge", action="store_true", help="add these runs to curve.json instead of replacing its held-out curves"
    )
    parser.add_argument("--out", type=Path, default=HERE / "curve.png", help="the figure (default: curve.png here)")
    args = parser.parse_args()
    if not args.plot_only:
        stored = json.loads((HERE / "curve.json").read_text())["curves"]
        # the withdrawn test-subset curves are kept whatever happens; the held-out ones only with --merge
        kept = [curve for curve in stored if args.merge or split_of(curve) != "val"]
        if any(curve["k"] != args.k for curve in kept if split_of(curve) == "val"):
            raise SystemExit("error: --merge needs the --k of the held-out curves already in curve.json")
        curves = [
            run_curve(run, k=args.k, images=args.images, data_root=args.data_root, last_only=args.last_only)
            for run in args.runs
        ]
        names = {curve["run"] for curve in curves}  # these runs replace their old held-out curves
        curves = [curve for curve in kept if split_of(curve) != "val" or curve["run"] not in names] + curves
        (HERE / "curve.json").write_text(json.dumps({"curves": curves}, indent=1) + "\n")
    plot(json.loads((HERE / "curve.json").read_text())["curves"], BURDA, out=args.out)


if __name__ == "__main__":
    main()

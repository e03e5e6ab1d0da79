"""Held-out learning curves from the trainer's own validation pass: -ELBO (and each layer's KL) per epoch.

    python experiments/likelihood/heldout.py RUN_DIR ... [--out heldout.json] [--figure heldout.png]

Reads each run's TensorBoard event files (`val/neg_elbo_nats`, `val/kl_nats`, `val/kl_nats_z<i>`:
the validation pass at the end of every epoch, on the `data.val_split` training images held out of
training, z drawn with a fixed seed) and writes them to one JSON file and one figure. Nothing here
reads the test split: these curves say how far from converged a run is while it trains, and are
what any choice of schedule or size is made on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def heldout_curve(run_dir: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = [tag for tag in events.Tags()["scalars"] if tag == "val/neg_elbo_nats" or tag.startswith("val/kl_nats")]
    if "val/neg_elbo_nats" not in tags:
        raise SystemExit(f"error: {run_dir} has no val/neg_elbo_nats in its event files (is it a run directory?)")
    by_epoch: dict[int, dict] = {}
    for tag in tags:
        for event in events.Scalars(tag):  # a resumed run logs an epoch once; the last write wins
            by_epoch.setdefault(int(event.step), {})[tag.removeprefix("val/")] = event.value
    return {
        "run": run_dir.name,
        "split": "val",
        "points": [{"epoch": epoch, **values} for epoch, values in sorted(by_epoch.items())],
    }


def plot(curves: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for curve in curves:
        epochs = [p["epoch"] for p in curve["points"]]
        axis.plot(epochs, [p["neg_elbo_nats"] for p in curve["points"]], marker="o", ms=3, label=curve["run"])
    axis.set_xlabel("epoch")
    axis.set_ylabel("held-out -ELBO (nats), validation pass")
    axis.set_title("Held-out -ELBO per epoch (training images held out of training)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=HERE / "heldout.json")
    parser.add_argument("--figure", type=Path, default=HERE / "heldout.png")
    args = parser.parse_args()
    curves = [heldout_curve(run) for run in args.runs]
    args.out.write_text(json.dumps({"curves": curves}, indent=1) + "\n")
    plot(curves, args.figure)
    for curve in curves:
        last = curve["points"][-1]
        print(f"{curve['run']}: epoch {last['epoch']}, held-out -ELBO {last['neg_elbo_nats']:.2f} nats")
    print(f"wrote {args.out} and {args.figure}")


if __name__ == "__main__":
    main()

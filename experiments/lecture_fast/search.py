"""The search behind `experiment=lecture_fast`: the lecture's run in the fewest wall-clock seconds.

Everything that defines the lecture's experiment stays (conv model, glorot init, latent 2,
lambda 1e-3, BCE, mean reduction, Adam); only batch size, peak lr, warm-up, schedule and epochs
move. Stage `search` tunes on the held-out split (5,000 training images; the test split is
never looked at); stage `final` runs the chosen settings (`experiment=lecture_fast`) and the
lecture itself on the test split, as the lecture reported, for several seeds.

    python experiments/lecture_fast/search.py --data-root <MNIST dir> --stage search
    python experiments/lecture_fast/search.py --data-root <MNIST dir> --stage final --seeds 0 1 2 --lecture-seeds 0

Each run is `python -m vae.train` in outputs/lecture_fast/<name>/; a run already finished is
read, not re-run, so the script can be stopped and started again. Results go to
experiments/lecture_fast/<stage>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

TARGET = 0.1858  # the lecture's val_loss after 50 epochs
HERE = Path(__file__).resolve().parent
# Candidates of the search: name -> overrides on top of `experiment=lecture`.
CANDIDATES = {
    "cos3e-3_w200_e5": ["optim.lr=3e-3", "optim.schedule=cosine", "optim.warmup_steps=200", "epochs=5"],
    "cos3e-3_w200_e4": ["optim.lr=3e-3", "optim.schedule=cosine", "optim.warmup_steps=200", "epochs=4"],
    "cos2e-3_w200_e5": ["optim.lr=2e-3", "optim.schedule=cosine", "optim.warmup_steps=200", "epochs=5"],
    "cos5e-3_w500_e5": ["optim.lr=5e-3", "optim.schedule=cosine", "optim.warmup_steps=500", "epochs=5"],
    "lin3e-3_w200_e5": ["optim.lr=3e-3", "optim.schedule=linear", "optim.warmup_steps=200", "epochs=5"],
    "b64_cos2e-3_w400_e4": [
        "batch_size=64",
        "optim.lr=2e-3",
        "optim.schedule=cosine",
        "optim.warmup_steps=400",
        "epochs=4",
    ],
    "b256_cos5e-3_w200_e5": [
        "batch_size=256",
        "optim.lr=5e-3",
        "optim.schedule=cosine",
        "optim.warmup_steps=200",
        "epochs=5",
    ],
    "cos5e-3_w500_e4": ["optim.lr=5e-3", "optim.schedule=cosine", "optim.warmup_steps=500", "epochs=4"],
    "b64_cos3e-3_w500_e4": [
        "batch_size=64",
        "optim.lr=3e-3",
        "optim.schedule=cosine",
        "optim.warmup_steps=500",
        "epochs=4",
    ],
    "b64_cos3e-3_w500_e6": [
        "batch_size=64",
        "optim.lr=3e-3",
        "optim.schedule=cosine",
        "optim.warmup_steps=500",
        "epochs=6",
    ],
    "cos5e-3_w500_e6": ["optim.lr=5e-3", "optim.schedule=cosine", "optim.warmup_steps=500", "epochs=6"],
    "cos3e-3_w200_e6": ["optim.lr=3e-3", "optim.schedule=cosine", "optim.warmup_steps=200", "epochs=6"],
}


def run(name: str, overrides: list[str], *, data_root: str, out_root: Path) -> dict:
    """One training run through the CLI (skipped when finished already); its metrics.json."""
    run_dir = out_root / name
    metrics_path = run_dir / "metrics.json"
    epochs = int(next((o.split("=")[1] for o in overrides if o.startswith("epochs=")), 50))
    if metrics_path.is_file() and json.loads(metrics_path.read_text())["epoch"] >= epochs:
        return json.loads(metrics_path.read_text())
    command = [sys.executable, "-m", "vae.train", *overrides, f"data.root={data_root}", f"hydra.run.dir={run_dir}"]
    print(" ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)
    return json.loads(metrics_path.read_text())


def time_to_target(history: list[dict], target: float = TARGET) -> tuple[int | None, float | None]:
    """The first epoch whose val_loss is at or below `target`, and the wall seconds (training + validation) to it."""
    seconds = 0.0
    for entry in history:
        seconds += entry["epoch_seconds"]
        if entry["val_loss"] <= target:
            return entry["epoch"], seconds
    return None, None


def summary(name: str, overrides: list[str], metrics: dict) -> dict:
    epoch, seconds = time_to_target(metrics["history"])
    return {
        "name": name,
        "overrides": overrides,
        "val_loss": [entry["val_loss"] for entry in metrics["history"]],
        "epoch_seconds": [entry["epoch_seconds"] for entry in metrics["history"]],
        "epoch_to_target": epoch,
        "seconds_to_target": seconds,
        "final_val_loss": metrics["val"]["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="./data")
    parser.add_argument("--stage", choices=("search", "final"), default="search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="search: 0 for all; final: 0 1 2")
    parser.add_argument("--lecture-epochs", type=int, default=14)
    parser.add_argument("--lecture-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--only", nargs="*", help="candidate names to run (search stage)")
    parser.add_argument("--out-root", default="outputs/lecture_fast")
    args = parser.parse_args()
    out_root = Path(args.out_root)
    results_path = HERE / f"{args.stage}.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"runs": []}
    done = {entry["name"] for entry in results["runs"]}
    if args.stage == "search":
        plan = {
            name + (f"_seed{seed}" if seed else ""): [
                "experiment=lecture",
                "data.val_source=holdout",
                *overrides,
                f"seed={seed}",
            ]
            for name, overrides in CANDIDATES.items()
            if not args.only or name in args.only
            for seed in args.seeds
        }
    else:
        plan = {f"lecture_fast_seed{seed}": ["experiment=lecture_fast", f"seed={seed}"] for seed in args.seeds}
        for seed in args.lecture_seeds:
            plan[f"lecture_seed{seed}"] = ["experiment=lecture", f"epochs={args.lecture_epochs}", f"seed={seed}"]
    for name, overrides in plan.items():
        if name in done:
            continue
        entry = summary(name, overrides, run(name, overrides, data_root=args.data_root, out_root=out_root))
        results["runs"].append(entry)
        results_path.write_text(json.dumps(results, indent=1))
        print(
            f"{name}: val_loss {' '.join(f'{v:.4f}' for v in entry['val_loss'])}; "
            f"<= {TARGET} at epoch {entry['epoch_to_target']} ({entry['seconds_to_target']} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()

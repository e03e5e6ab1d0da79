"""The search behind `experiment=lecture_fast`: the lecture's run in the fewest wall-clock seconds.

Everything that defines the lecture's experiment stays (conv model, glorot init, latent 2,
lambda 1e-3, BCE, mean reduction, Adam); only batch size, peak lr, warm-up, schedule and epochs
move. Stage `search` (history, session 3) tuned the schedule on the held-out split (5,000
training images). Stage `final` follows the protocol fixed in `PROTOCOL` before its runs: the
budget (epochs) is chosen on the held-out split alone, then the chosen schedule runs on 3 new
seeds with the lecture's protocol (the test split as its validation data, reported per epoch,
nothing chosen from it).

    python experiments/lecture_fast/search.py --data-root <MNIST dir> --stage search [--only NAME ...]
    python experiments/lecture_fast/search.py --data-root <MNIST dir> --stage final [--threads 1]

Each run is `python -m vae.train` in outputs/lecture_fast/<name>/; a run already finished is
read, not re-run, so the script can be stopped and started again. Results go to
experiments/lecture_fast/search.json and final.json (`protocol`: candidates, rule, held-out
runs, choice; `runs`: the final seeds; `history`: the runs of the withdrawn protocol).
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


# The protocol of stage `final`, written down before any of its runs (session of 2026-12-02).
PROTOCOL = {
    "schedule": "batch 64, Adam (Keras' epsilon 1e-7) rising linearly over 500 steps to 3e-3, then a cosine "
    "decay to 0 at the last step of the budget: the held-out search's first choice (search.json, "
    "b64_cos3e-3_w500_e4, chosen on the held-out split before any test-split run); only the budget is re-chosen",
    "candidates": {"epochs": [4, 5, 6, 7, 8]},
    "selection_split": "data.val_source=holdout: 5,000 training images held out (split_seed 0), never the test split",
    "selection_seeds": [0, 1, 2],
    "target_heldout_val_loss": 0.1850,
    "rule": "the smallest budget, tried in increasing order, whose held-out val_loss after its last epoch is at "
    "or below 0.1850 on every one of the 3 selection seeds (seeds run in order; a budget fails at its "
    "first seed above 0.1850, and its later seeds are not run); the first budget that passes ends the "
    "selection (larger ones are not run); if none passes, the largest (8) is chosen and the README says so. "
    "0.1850 is the project's test-split goal (the lecture's 50-epoch 0.1858, less a margin) used unchanged "
    "on the held-out split: no reference run of the lecture's own 50-epoch schedule on the held-out split "
    "(its seed 0 stalls there, experiments/lecture) and no calibration between the splits",
    "final_seeds": [3, 4, 5],
    "final_protocol": "experiment=lecture_fast with the chosen budget: the lecture's protocol (the test split as "
    "its validation data, read every epoch as the lecture reported it); nothing is chosen from it",
    "device": "one CPU model for every run of this stage (run.json of each run says which)",
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


def final(args: argparse.Namespace, out_root: Path, results_path: Path, results: dict) -> None:
    """Stage `final`: the budget chosen on the held-out split by `PROTOCOL`, then its runs on the new seeds."""
    if "protocol" not in results:  # the first run of this protocol: the earlier runs become history
        results = {
            "protocol": {**PROTOCOL, "heldout_runs": [], "choice": None},
            "runs": [],
            "history": {
                "note": "withdrawn protocol (session 3, 2-core AMD EPYC with AVX512-BF16, bf16 autocast): the "
                "6-epoch budget was chosen after the 4-epoch runs had been read on the test split",
                "runs": results["runs"],
            },
        }
    protocol = results["protocol"]
    threads = [f"threads={args.threads}"] if args.threads else []
    save = lambda: results_path.write_text(json.dumps(results, indent=1))  # noqa: E731
    done = {entry["name"]: entry for entry in protocol["heldout_runs"]}
    for epochs in PROTOCOL["candidates"]["epochs"]:
        if protocol["choice"] is not None:
            break
        finals = []
        for seed in PROTOCOL["selection_seeds"]:
            name = f"heldout_e{epochs}_seed{seed}"
            if name not in done:
                overrides = ["experiment=lecture_fast", "data.val_source=holdout", f"epochs={epochs}", f"seed={seed}"]
                metrics = run(name, overrides + threads, data_root=args.data_root, out_root=out_root)
                done[name] = {**summary(name, overrides, metrics), "epochs": epochs, "seed": seed}
                protocol["heldout_runs"].append(done[name])
                save()
            finals.append(done[name]["final_val_loss"])
            print(f"{name}: held-out val_loss {done[name]['final_val_loss']:.4f}", flush=True)
            if finals[-1] > PROTOCOL["target_heldout_val_loss"]:
                break  # this budget has failed: its other seeds are not run
        if max(finals) <= PROTOCOL["target_heldout_val_loss"] or epochs == PROTOCOL["candidates"]["epochs"][-1]:
            protocol["choice"] = {
                "epochs": epochs,
                "heldout_final_val_loss": finals,
                "passed": max(finals) <= PROTOCOL["target_heldout_val_loss"],
            }
            save()
    chosen = protocol["choice"]["epochs"]
    print(f"chosen budget: {chosen} epochs ({protocol['choice']})", flush=True)
    names = {entry["name"] for entry in results["runs"]}
    for seed in PROTOCOL["final_seeds"]:
        name = f"lecture_fast_seed{seed}"
        if name in names:
            continue
        overrides = ["experiment=lecture_fast", f"epochs={chosen}", f"seed={seed}"]
        entry = summary(name, overrides, run(name, overrides + threads, data_root=args.data_root, out_root=out_root))
        results["runs"].append(entry)
        save()
        print(f"{name}: test-split val_loss {' '.join(f'{v:.4f}' for v in entry['val_loss'])}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="./data")
    parser.add_argument("--stage", choices=("search", "final"), default="search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="search stage: the seeds of each candidate")
    parser.add_argument(
        "--threads", type=int, default=0, help="final stage: torch threads per run (0: the trainer's default)"
    )
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
        final(args, out_root, results_path, results)
        return
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

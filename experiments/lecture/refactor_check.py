"""A refactor's "nothing moves" record: the lecture's 2-epoch deterministic fp32 run from the code before and after it.

    (code before)  python -m vae.train experiment=lecture epochs=2 seed=0 deterministic=true precision=fp32 \\
                       threads=1 data.root=<MNIST dir> hydra.run.dir=<before>
    (code after)   the same into <after>; then copies of both resumed for a third epoch by the code after:
                   python -m vae.train resume=<copy> epochs=3
    python experiments/lecture/refactor_check.py --name <what> --before <before> --after <after> \\
        --before-resumed <copy of before> --after-resumed <copy of after> --out experiments/lecture/<name>.json

Each run's metrics.json (train, val, history) and run.json (commit, machine, runtime) go into the record;
tests/test_weights.py holds every record in experiments/lecture/*refactor_check.json to equality: the same
numbers before and after on one CPU model, and the checkpoint saved before resuming as the one saved after.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

COMMAND = (
    "python -m vae.train experiment=lecture epochs=2 seed=0 deterministic=true precision=fp32 threads=1 "
    "data.root=<MNIST dir>"
)


def run_numbers(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    return {
        "commit": run["git"]["commit"],
        "dirty": run["git"]["dirty"],
        "machine": run["machine"],
        "runtime": run["runtime"],
        "train": metrics["train"],
        "val": metrics["val"],
        "history": [
            {k: v for k, v in r.items() if k not in ("images_per_second", "epoch_seconds")} for r in metrics["history"]
        ],
    }


def resumed_numbers(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    resume = run["resumes"][-1]  # the resume that ran the third epoch
    return {
        "resumed_with": resume["git"],
        "machine": resume["machine"],
        "train": metrics["train"],
        "val": metrics["val"],
        "epoch": metrics["epoch"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="what changed between before and after")
    for key in ("before", "after", "before-resumed", "after-resumed"):
        parser.add_argument(f"--{key}", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    record = {
        "what": f"'nothing moves': the lecture's 2-epoch deterministic fp32 run before and after {args.name}, on one machine",
        "command": COMMAND,
        "runs": {"before": run_numbers(args.before), "after": run_numbers(args.after)},
        "date": time.strftime("%Y-%m-%d"),
        "resume_check": {
            "what": "each run's epoch-2 checkpoint resumed for a third epoch by the code after the change: the one "
            "saved by the code before it continues exactly as the one saved after",
            "command": "python -m vae.train resume=<run> epochs=3",
            "runs": {
                "before_saved_resumed_after": resumed_numbers(args.before_resumed),
                "after_saved_resumed_after": resumed_numbers(args.after_resumed),
            },
        },
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()

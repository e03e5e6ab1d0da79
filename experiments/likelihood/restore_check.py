"""Does a committed run evaluate to the same numbers from its restored weights, and from half-precision weights?

    python experiments/likelihood/restore_check.py --label before --data-root <MNIST dir> <run> ...
    python -m vae.weights restore && python experiments/likelihood/restore_check.py --label restored --data-root <MNIST dir> <run> ...
    python experiments/likelihood/restore_check.py --label fp16 --half --data-root <MNIST dir> <run> ...

Each run is copied to a temporary folder (nothing is written into the committed run) and evaluated
with `python -m vae.evaluate run=<copy> checkpoint=last iwae_k=100 max_images=500 precision=fp32`, the
same seed every time. `--half` first exports the copy with `vae.export ... dtype=fp16` (weights stored
in float16, loaded back into fp32), to measure what half-precision storage changes. The numbers, the
SHA-256 of the weights evaluated, the command, the commit, the CPU and the date go into
restore_check.json under the label; tests/test_weights.py checks that `before` and `restored` agree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from vae.evaluate import main as evaluate
from vae.export import main as export
from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16, git_commit

HERE = Path(__file__).resolve().parent
OUT = HERE / "restore_check.json"
SETTINGS = ["checkpoint=last", "iwae_k=100", "max_images=500", "precision=fp32"]
KEYS = ("iwae_nll_nats", "neg_elbo_nats", "active_units", "num_images", "iwae_k", "precision")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_run(run: Path, *, data_root: str, half: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / run.name
        if half:
            export([f"run={run}", f"out={copy}", "dtype=fp16"])
        else:
            shutil.copytree(run, copy)
        weights = copy / "checkpoints" / "last.pt"
        results = evaluate([f"run={copy}", *SETTINGS, f"data_root={data_root}"])
        return {key: results[key] for key in KEYS} | {
            "weights_sha256": sha256(weights),
            "weights_bytes": weights.stat().st_size,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--label", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--half", action="store_true", help="evaluate an fp16 export of each run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record = json.loads(OUT.read_text()) if OUT.is_file() else {}
    record.setdefault(
        "command",
        "python -m vae.evaluate run=<copy of the run> " + " ".join(SETTINGS) + " data_root=<MNIST dir>",
    )
    entry = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(HERE)["commit"],
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_bf16": cpu_supports_bf16(),
        "threads": args.threads,
        "half": args.half,
        "runs": {},
    }
    for run in args.runs:
        entry["runs"][run.name] = check_run(run, data_root=args.data_root, half=args.half)
        print(run.name, json.dumps(entry["runs"][run.name]))
    record.setdefault("labels", {})[args.label] = entry
    OUT.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()

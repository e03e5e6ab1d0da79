"""What the two-run comparisons share (experiments/dmol, experiments/vamp, experiments/beta_tcvae): their
command-line arguments, the overrides every run gets, training a run once, and the record's provenance.

A comparison script puts this folder on sys.path and calls, in order: `parser(...)`, then `parse(...)` (which
prints the README's table and stops for --table), `run_overrides(...)` for the base every run shares,
`train_once(...)` per run, and `write_record(...)` with its own fields.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path


def parser(description: str, *, epochs: int, runs_dir: str, out: Path, experiment: str | None = None):
    """The arguments every comparison takes; `experiment` adds --experiment with that default."""
    result = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--data-root")
    result.add_argument("--epochs", type=int, default=epochs)
    result.add_argument("--seed", type=int, default=0)
    result.add_argument("--threads", type=int, default=1)
    result.add_argument("--runs-dir", type=Path, default=Path("outputs") / runs_dir)
    result.add_argument("--out", type=Path, default=out)
    if experiment is not None:
        result.add_argument("--experiment", default=experiment, help="the runs' experiment ('' for none: tests)")
    result.add_argument("--override", nargs="*", default=[], help="more overrides for every run (tests)")
    result.add_argument("--table", action="store_true", help="print the README's table from --out and stop")
    return result


def parse(parser: argparse.ArgumentParser, argv: list[str] | None, table: Callable[[dict], str]):
    """(args, None) to run; (args, the record) after printing its table when --table asks for it."""
    args = parser.parse_args(argv)
    if args.table:
        record = json.loads(args.out.read_text())
        print(table(record))
        return args, record
    if not args.data_root:
        parser.error("--data-root is required (MNIST's folder)")
    return args, None


def run_overrides(args: argparse.Namespace, base: list[str]) -> list[str]:
    """`base` with the data, budget, seed and threads of the command line; an --override replaces a key of them."""
    common = [*base, f"data.root={args.data_root}", f"epochs={args.epochs}", f"seed={args.seed}"]
    common.append(f"threads={args.threads}")
    replaced = {override.split("=", 1)[0] for override in args.override}
    return [o for o in common if o.split("=", 1)[0] not in replaced] + args.override


def train_once(overrides: list[str], run_dir: Path) -> float:
    """Train the run unless its directory holds a finished one; the seconds it took."""
    from vae.config import compose
    from vae.train import train

    start = time.monotonic()
    if not (run_dir / "metrics.json").is_file():
        train(compose(overrides), run_dir)
    return time.monotonic() - start


def write_record(script: str, args: argparse.Namespace, argv: list[str] | None, fields: dict) -> dict:
    """`fields` with the command as typed (the data folder as <MNIST dir>), the seed, the machine, the commit
    and the date, written to --out."""
    from vae.runtime import git_commit, machine_info

    typed = sys.argv[1:] if argv is None else argv
    record = {
        "command": f"python {script} " + " ".join("<MNIST dir>" if a == args.data_root else a for a in typed),
        **fields,
        "seed": args.seed,
        "machine": machine_info("cpu"),
        "git": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return record

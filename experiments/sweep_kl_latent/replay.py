"""Does this machine compute what the machine of a committed job computed? Re-run its first epochs and compare.

    python experiments/sweep_kl_latent/replay.py --data-root <MNIST dir> --epochs 1 \
        experiments/sweep_kl_latent/epochs48/0 experiments/sweep_kl_latent/epochs48/13

Each job is trained again here from its own `.hydra/overrides.yaml` (the same config, seed, thread
count and epoch budget, so the same learning-rate schedule) until `--epochs` epochs are done, then
stopped; its per-epoch history (training loss, val_loss, val -ELBO) is compared with the committed
`metrics.json` number for number. Training is not bit-reproducible across machines in general
(bf16 kernels, `deterministic: false`), so equal numbers at every compared epoch say this machine's
kernels compute what the job's machine computed: the two count as one device for the study. The
result (this machine's `machine` record beside the job's, and every compared number) goes to
`replay.json`, one entry per job (a job replayed again replaces its entry).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
COMPARED = ("train_loss", "val_loss", "val_neg_elbo_nats")


def replay_overrides(job: Path, data_root: str) -> list[str]:
    """The job's command-line overrides with this machine's data root (no Hydra keys)."""
    overrides = list(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
    kept = [item for item in overrides if not item.startswith(("hydra.", "data.root="))]
    return [*kept, f"data.root={data_root}"]


def compare(committed: list[dict], replayed: list[dict], epochs: int) -> dict:
    """Each compared epoch's numbers, committed and replayed, and whether every one is equal."""
    rows = []
    for epoch in range(1, epochs + 1):
        old = next(entry for entry in committed if entry["epoch"] == epoch)
        new = next(entry for entry in replayed if entry["epoch"] == epoch)
        rows.append({"epoch": epoch, **{key: {"committed": old[key], "here": new[key]} for key in COMPARED}})
    identical = all(row[key]["committed"] == row[key]["here"] for row in rows for key in COMPARED)
    return {"epochs": rows, "identical": identical}


def train_epochs(job: Path, data_root: str, epochs: int, work: Path) -> tuple[list[dict], dict]:
    """Train the job's config here until `epochs` epochs are in metrics.json; its history and run.json's machine."""
    run_dir = work / job.name
    command = [sys.executable, "-m", "vae.train", *replay_overrides(job, data_root), f"hydra.run.dir={run_dir}"]
    log = (work / f"{job.name}.log").open("w")
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    metrics = run_dir / "metrics.json"
    try:
        while True:
            if process.poll() is not None and not metrics.is_file():
                raise SystemExit(f"error: the replay of {job} stopped (exit {process.returncode}); see {log.name}")
            if metrics.is_file():
                try:
                    history = json.loads(metrics.read_text()).get("history", [])
                except json.JSONDecodeError:  # being written
                    history = []
                if len(history) >= epochs:
                    break
                if process.poll() is not None:
                    raise SystemExit(f"error: the replay of {job} ended after {len(history)} epochs")
            time.sleep(2)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=120)
        log.close()
    machine = json.loads((run_dir / "run.json").read_text()).get("machine", {})
    return history, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jobs", type=Path, nargs="+", help="committed job directories (with .hydra/ and metrics.json)")
    parser.add_argument("--data-root", required=True, help="this machine's MNIST directory")
    parser.add_argument("--epochs", type=int, default=1, help="epochs to replay and compare (default 1)")
    parser.add_argument("--out", type=Path, default=HERE / "replay.json")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    for job in args.jobs:
        if not (job / ".hydra" / "overrides.yaml").is_file() or not (job / "metrics.json").is_file():
            parser.error(f"{job} is not a committed job (no .hydra/overrides.yaml or metrics.json)")
        if len(json.loads((job / "metrics.json").read_text())["history"]) < args.epochs:
            parser.error(f"{job} has fewer than {args.epochs} epochs to compare")
    entries = json.loads(args.out.read_text()) if args.out.is_file() else []
    with tempfile.TemporaryDirectory(prefix="replay-") as work:
        for job in args.jobs:
            committed = json.loads((job / "metrics.json").read_text())["history"]
            history, machine = train_epochs(job, args.data_root, args.epochs, Path(work))
            result = compare(committed, history, args.epochs)
            name = str(job.resolve().relative_to(REPO)) if job.resolve().is_relative_to(REPO) else str(job)
            job_run = json.loads((job / "run.json").read_text())
            entry = {
                "job": name,
                "job_started": job_run.get("started"),
                "job_git": job_run.get("git"),
                "job_machine": job_run.get("machine"),
                "machine_here": machine,
                **result,
            }
            entries = [old for old in entries if old["job"] != name] + [entry]
            args.out.write_text(json.dumps(entries, indent=1) + "\n")
            verdict = "identical" if result["identical"] else "DIFFERENT"
            print(f"{name}: {verdict} over {args.epochs} epoch(s)", flush=True)


if __name__ == "__main__":
    main()

"""The grid's sample-quality axis: its 27 jobs trained again at one budget, their weights kept, each scored once.

The lambda x latent_dim grid (kl_weight in {0, 1e-5, ..., 1} x latent_dim in {2, 8, 32}, seed 0, and seeds
1 and 2 of the kl_weight = 1e-3 row) kept no weights in epochs48/, so sample quality needs the jobs trained
again: experiment=sweep_kl_latent at the budget `quality_budget.py` chose on held-out images, from one
pinned commit, `precision=fp32 device=cpu threads=1` (one precision whatever CPU a session gets), two Hydra
multiruns (seed 0; the seeds), which the same command continues when they stop:

    python experiments/sweep_kl_latent/quality_grid.py train --data-root <MNIST dir> --epochs 12
    python -m vae.weights save experiments/sweep_kl_latent/runs/grid/*/[0-9]*   # each session's end
    python experiments/sweep_kl_latent/quality_grid.py score --data-root <MNIST dir>
    python experiments/sweep_kl_latent/quality_grid.py report

Each job writes its final weights as a snapshot (checkpoints/epoch_NNNN.pt, weights only), which `save` keeps
once the job has finished (its whole training state, last.pt, while it trains). `score` runs
`python -m vae.quality run=<job> features=mnist n=10000 split=test checkpoint=epoch_NNNN` for every
finished job that has no such result yet (the test split is read once per job and number); `report`
collects the jobs (configs, metrics, images, the quality results; no checkpoints) into quality/ and runs
`python -m vae.report` there: report.md, report.csv and quality.png, rate, distortion and sample FID
against lambda per latent_dim with the floor, the samples of each cell under its numbers. After
`python -m vae.weights restore experiments/sweep_kl_latent/runs/grid`, deleting a job's quality result and
running `score` again re-scores it from the kept weights.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs" / "grid"
OUT = HERE / "quality"
KL_WEIGHTS = ("0", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1", "1")
LATENT_DIMS = (2, 8, 32)
SEEDS_ROW = "1e-3"  # the row with three seeds
EXTRA_SEEDS = (1, 2)
N = 10_000  # prior samples and reconstructions per job, against the 10,000 test images
PINNED = ["precision=fp32", "device=cpu", "threads=1", "checkpoint_every_steps=2000"]


def sweeps(runs: Path) -> dict[str, list[str]]:
    """The two multiruns, by directory name: the grid at seed 0, and the extra seeds of the kl_weight 1e-3 row."""
    found = {"seed0": [f"kl_weight={','.join(KL_WEIGHTS)}", f"latent_dim={','.join(map(str, LATENT_DIMS))}", "seed=0"]}
    if EXTRA_SEEDS:
        found["seeds"] = [
            f"kl_weight={SEEDS_ROW}",
            f"latent_dim={','.join(map(str, LATENT_DIMS))}",
            f"seed={','.join(map(str, EXTRA_SEEDS))}",
        ]
    return found


def train_all(args) -> None:
    for name, grid in sweeps(args.runs).items():
        command = [
            sys.executable,
            "-m",
            "vae.train",
            "-m",
            "experiment=sweep_kl_latent",
            *grid,
            f"epochs={args.epochs}",
            f"snapshot_every_epochs={args.epochs}",  # the final weights alone (epoch_NNNN.pt): what is kept and scored
            *PINNED,
            f"data.root={args.data_root}",
            f"hydra.sweep.dir={args.runs / name}",
            *args.override,
        ]
        print(f"{name}: {' '.join(command[1:])}", flush=True)
        subprocess.run(command, check=True)


def finished_jobs(runs: Path) -> list[Path]:
    from vae.report import job_dirs, read_job

    jobs = [job for name in sweeps(runs) if (runs / name).is_dir() for job in job_dirs(runs / name)]
    return [job for job in jobs if read_job(job)["status"] == "ok"]


def score_all(args) -> None:
    from vae.quality import QualityArgs, run_form, write_run_outputs

    jobs = finished_jobs(args.runs)
    if not jobs:
        sys.exit(f"error: {args.runs} holds no finished job: train first")
    for job in jobs:
        final = f"epoch_{json.loads((job / 'metrics.json').read_text())['epoch']:04d}"
        if (job / "evals" / f"quality_{final}_test_mnist_n{args.n}_t1_s0.json").is_file():
            continue  # scored: the test split is read once per job
        quality_args = QualityArgs(
            run=str(job), features="mnist", n=args.n, split="test", checkpoint=final, data_root=args.data_root
        )
        start = time.perf_counter()
        write_run_outputs(job, quality_args, run_form(quality_args))
        print(f"{job.parent.name}/{job.name}: scored in {time.perf_counter() - start:.0f} s", flush=True)


def report_all(args) -> None:
    from vae.report import write_report

    sys.path.insert(0, str(HERE))
    from collect import collect

    sources = [args.runs / name for name in sweeps(args.runs)]
    missing = [str(job) for job in finished_jobs(args.runs) if not any((job / "evals").glob("quality_*_test_*"))]
    if missing:
        sys.exit(f"error: jobs without a quality result (run score first): {', '.join(missing)}")
    collect(sources, args.out, device="cpu")
    _, written = write_report(args.out)
    print("wrote " + ", ".join(str(args.out / name) for name in written))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("train", "score", "report"))
    parser.add_argument("--data-root", help="the folder holding MNIST (train, score)")
    parser.add_argument("--epochs", type=int, help="train: the budget (quality_budget.py's choice)")
    parser.add_argument("--runs", type=Path, default=RUNS, help="where the two multiruns train")
    parser.add_argument("--out", type=Path, default=OUT, help="report: the collected jobs and the report")
    parser.add_argument("--n", type=int, default=N, help="score: samples and reconstructions per job")
    parser.add_argument("--override", nargs="*", default=[], help="more config overrides (tests: data=synthetic ...)")
    args = parser.parse_args(argv)
    if args.step in ("train", "score") and not args.data_root:
        parser.error(f"{args.step} needs --data-root <the folder holding MNIST>")
    if args.step == "train" and (args.epochs is None or args.epochs < 1):
        parser.error(f"train needs --epochs >= 1, the budget quality_budget.py chose (got {args.epochs})")
    return {"train": train_all, "score": score_all, "report": report_all}[args.step](args)


if __name__ == "__main__":
    main()

"""Can the grid's sample-quality axis be trained on a shorter budget than 48 epochs? The FID ranking says.

Six cells of the grid (kl_weight 1e-4, 1e-3, 1e-2 x latent_dim 8, 32; seed 0; experiment=sweep_kl_latent,
pinned to `precision=fp32 device=cpu threads=1` as the grid's retraining is) are trained for its 48 epochs
with a snapshot every 6. Each snapshot's prior samples are scored on the held-out (validation) split, FID in
the MNIST classifier's space (`vae.quality samples_only=true`: no reconstructions, no floor): the choice of the budget B reads no test image. A budget is good enough for the
study's third axis when its FID ranking of the six cells is the ranking at epoch 48 (Kendall's tau = 1): first
as a snapshot of the 48-epoch runs (which chooses B), then as runs of B epochs with their own schedule (the
cosine decaying over B epochs), which are the grid's own seed-0 jobs of those cells (quality_grid.py's
runs/grid/seed0): `score` scores them on the validation split too once they exist, and `decide` adds their row.

Each checkpoint's samples are drawn twice (sample seeds 0 and 1); a cell's FID is the mean of the two, and
their spread, pooled over the six cells at epoch 48, is FID's sampling sd. Beside Kendall's tau over all 15
pairs, `decide` gives it over the pairs epoch 48 resolves (their difference above twice that sd): two cells
that epoch 48 cannot tell apart from the draw of the samples have no order for a shorter budget to match.

    python experiments/sweep_kl_latent/quality_budget.py train --data-root <data dir>
    python experiments/sweep_kl_latent/quality_budget.py score --data-root <data dir>
    python experiments/sweep_kl_latent/quality_budget.py decide        # budget_quality.json and the table

`train` continues a run that stopped (its last.pt) and skips a finished one, so the same command resumes
the study in a later session. Every run trains at threads=1 (one core; the study's other runs, or your
own work, take the other).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs"
GRID = RUNS / "grid" / "seed0"  # quality_grid.py's seed-0 multirun
KL_WEIGHTS = ("1e-4", "1e-3", "1e-2")
LATENT_DIMS = (8, 32)
FULL = 48  # the grid's budget (experiment=sweep_kl_latent)
SNAPSHOT_EVERY = 6
N = 5000  # prior samples per snapshot, against the 5,000 held-out images
SAMPLE_SEEDS = (0, 1)  # two draws of the N samples per checkpoint: FID's sampling noise, measured
OUT = HERE / "budget_quality.json"


def cells() -> list[tuple[str, int]]:
    return list(itertools.product(KL_WEIGHTS, LATENT_DIMS))


def run_dir(runs: Path, kl_weight: str, latent_dim: int, epochs: int) -> Path:
    return runs / f"kl{kl_weight}-d{latent_dim}-e{epochs}"


def train_all(args) -> None:
    from vae.config import compose
    from vae.train import resume_config, train

    for kl_weight, latent_dim in cells():
        run = run_dir(args.runs, kl_weight, latent_dim, FULL)
        metrics = run / "metrics.json"
        if metrics.is_file() and json.loads(metrics.read_text()).get("epoch") == FULL:
            print(f"{run.name}: finished", flush=True)
            continue
        overrides = [
            "experiment=sweep_kl_latent",
            f"kl_weight={kl_weight}",
            f"latent_dim={latent_dim}",
            "seed=0",
            f"epochs={FULL}",
            f"snapshot_every_epochs={SNAPSHOT_EVERY}",
            "precision=fp32",
            "device=cpu",
            "threads=1",
            "checkpoint_every_steps=2000",
            f"data.root={args.data_root}",
            *args.override,
        ]
        config = compose(overrides)
        print(f"{run.name}: training ({' '.join(overrides)})", flush=True)
        if (run / "checkpoints" / "last.pt").is_file():  # stopped: continue it bit for bit
            config, checkpoint = resume_config(run, config, [])
            train(config, run, resume_from=checkpoint)
        else:
            train(config, run)


def checkpoints_of(run: Path) -> list[tuple[int, str]]:
    """(epoch, checkpoint name) of a run's snapshots, or of its last.pt for a run without them."""
    snapshots = sorted(run.glob("checkpoints/epoch_*.pt"))
    if snapshots:
        return [(int(path.stem.removeprefix("epoch_")), path.stem) for path in snapshots]
    return [(json.loads((run / "metrics.json").read_text())["epoch"], "last")]


def grid_cell(job: Path) -> tuple[str, int] | None:
    """The (cell name, schedule epochs) of a grid job that is seed 0 of one of the six cells, else None."""
    from omegaconf import OmegaConf

    config = OmegaConf.load(job / ".hydra" / "config.yaml")
    if config.get("seed") != 0:
        return None
    for kl_weight, latent_dim in cells():
        if math.isclose(float(config.kl_weight), float(kl_weight)) and config.latent_dim == latent_dim:
            return f"kl{kl_weight}-d{latent_dim}", int(config.epochs)
    return None


def runs_of(args) -> list[tuple[Path, str, int]]:
    """(run directory, cell name, schedule epochs) of every finished or stopped run the study reads: its own
    48-epoch runs, and the grid's seed-0 jobs of the six cells (B epochs, their own schedule) where they exist."""
    found = []
    for run in sorted(args.runs.glob("kl*-d*-e*")):
        cell, _, schedule = run.name.rpartition("-e")
        found.append((run, cell, int(schedule)))
    if args.grid.is_dir():
        from vae.report import job_dirs

        for job in job_dirs(args.grid):
            if (job / ".hydra" / "config.yaml").is_file() and (named := grid_cell(job)) is not None:
                found.append((job, *named))
    return [(run, cell, schedule) for run, cell, schedule in found if (run / "metrics.json").is_file()]


def score_all(args) -> None:
    from vae.quality import QualityArgs, run_form, write_run_outputs

    for run, cell, schedule in runs_of(args):
        if json.loads((run / "metrics.json").read_text())["epoch"] < schedule:
            continue  # under way: its snapshots are scored once it has finished (or in a later session)
        for (epoch, name), seed in itertools.product(checkpoints_of(run), SAMPLE_SEEDS):
            if any((run / "evals").glob(f"quality_{name}_val_mnist_n{N}_t1_s{seed}*.json")):
                continue  # scored (samples alone, or with the reconstructions: the same samples' FID)
            quality_args = QualityArgs(
                run=str(run),
                features="mnist",
                n=N,
                split="val",
                checkpoint=name,
                seed=seed,
                samples_only=True,
                data_root=args.data_root,
            )
            start = time.perf_counter()
            write_run_outputs(run, quality_args, run_form(quality_args))
            print(
                f"{cell} ({schedule} epochs) {name} (epoch {epoch}), sample seed {seed}: "
                f"scored in {time.perf_counter() - start:.0f} s",
                flush=True,
            )


def kendall_tau(a: list[float], b: list[float]) -> float:
    pairs = list(itertools.combinations(range(len(a)), 2))
    agree = sum(1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 for i, j in pairs)
    return agree / len(pairs)


def resolved_tau(a: list[float], b: list[float], threshold: float) -> tuple[float | None, int]:
    """Kendall's tau over the pairs whose difference in `b` (the reference) exceeds `threshold`, and how many
    pairs that is: a pair the reference cannot tell apart from FID's sampling noise has no order to match."""
    pairs = [(i, j) for i, j in itertools.combinations(range(len(a)), 2) if abs(b[i] - b[j]) > threshold]
    if not pairs:
        return None, 0
    return sum(1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 for i, j in pairs) / len(pairs), len(pairs)


def decide(args) -> dict:
    from vae.runtime import cpu_id, cpu_model, cpu_supports_bf16, git_commit

    draws: dict[str, dict[str, dict[int, float]]] = {}  # "<schedule>@<epoch>" -> cell -> sample seed -> FID
    for run, cell, schedule in runs_of(args):
        for path in run.glob(f"evals/quality_*_val_mnist_n{N}_t1_s*.json"):
            result = json.loads(path.read_text())
            if result["seed"] in SAMPLE_SEEDS:
                draws.setdefault(f"e{schedule}@{result['epoch']}", {}).setdefault(cell, {})[result["seed"]] = result[
                    "fid"
                ]
    names = [f"kl{kl_weight}-d{latent_dim}" for kl_weight, latent_dim in cells()]
    complete = {
        key: by_cell
        for key, by_cell in draws.items()
        if set(by_cell) == set(names) and all(set(d) == set(SAMPLE_SEEDS) for d in by_cell.values())
    }
    reference_key = f"e{FULL}@{FULL}"
    if reference_key not in complete:
        have = sorted(draws.get(reference_key, {}))
        sys.exit(f"error: epoch {FULL} of the six {FULL}-epoch runs is not scored with every sample seed yet ({have})")
    # FID's sampling noise: the sd of one FID over draws of the samples, pooled over the six cells at epoch 48.
    # The difference of two cells' means over the draws has that sd too (two means of two draws each).
    ref = complete[reference_key]
    noise_sd = math.sqrt(statistics.mean(statistics.variance(ref[n].values()) for n in names))
    threshold = 2 * noise_sd
    mean = {key: {n: statistics.mean(by_cell[n].values()) for n in names} for key, by_cell in complete.items()}
    reference = [mean[reference_key][n] for n in names]
    rows = []
    for key in sorted(complete, key=lambda k: (int(k[1:].split("@")[0]), int(k.split("@")[1]))):
        fid = [mean[key][n] for n in names]
        tau, pairs = resolved_tau(fid, reference, threshold)
        rows.append(
            {
                "schedule_epochs": int(key[1:].split("@")[0]),
                "epoch": int(key.split("@")[1]),
                "kendall_tau": kendall_tau(fid, reference),
                "kendall_tau_resolved": tau,
                "resolved_pairs": pairs,
                "fid": mean[key],
                "fid_draws": {n: [complete[key][n][seed] for seed in SAMPLE_SEEDS] for n in names},
            }
        )

    def smallest(field: str, full: bool):
        good = [r for r in rows if r[field] == 1.0 and (r["schedule_epochs"] == FULL) == full]
        return min((r["epoch"] for r in good), default=None) if full else sorted({r["schedule_epochs"] for r in good})

    record = {
        "question": f"the fewest epochs whose FID ranking of the six cells equals the ranking at epoch {FULL}",
        "protocol": (
            f"experiment=sweep_kl_latent seed=0 precision=fp32 threads=1; kl_weight {', '.join(KL_WEIGHTS)} x "
            f"latent_dim {', '.join(map(str, LATENT_DIMS))}; per checkpoint {N} prior samples, drawn twice (sample "
            f"seeds {', '.join(map(str, SAMPLE_SEEDS))}), against the 5,000 held-out (validation) images, MNIST "
            "classifier features (vae.quality, split=val); a cell's FID is the mean of its draws; Kendall's tau "
            f"against epoch {FULL} of the {FULL}-epoch runs over all 15 pairs, and over the pairs whose epoch-{FULL} "
            "difference exceeds twice FID's sampling sd (resolved)"
        ),
        "fid_sampling_sd": noise_sd,
        "resolved_threshold": threshold,
        "rows": rows,
        "smallest_snapshot_with_same_ranking": smallest("kendall_tau", True),
        "smallest_snapshot_with_same_resolved_ranking": smallest("kendall_tau_resolved", True),
        "shorter_schedules_with_same_ranking": smallest("kendall_tau", False),
        "shorter_schedules_with_same_resolved_ranking": smallest("kendall_tau_resolved", False),
        "command": "python experiments/sweep_kl_latent/quality_budget.py decide"
        + ("" if args.runs == RUNS else f" --runs {args.runs}")
        + ("" if args.grid == GRID else f" --grid {args.grid}"),
        "commit": git_commit()["commit"],
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cpu_bf16": cpu_supports_bf16(),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"FID's sampling sd {noise_sd:.3f}: pairs closer than {threshold:.3f} at epoch {FULL} are not ranked")
    print("| schedule | epoch | " + " | ".join(names) + " | Kendall's tau | resolved (pairs) |")
    print("|---:|---:|" + "---:|" * len(names) + "---:|---:|")
    for row in rows:
        cells_text = " | ".join(f"{row['fid'][n]:.2f}" for n in names)
        resolved = "-" if row["kendall_tau_resolved"] is None else f"{row['kendall_tau_resolved']:.2f}"
        print(
            f"| {row['schedule_epochs']} | {row['epoch']} | {cells_text} | {row['kendall_tau']:.2f} | "
            f"{resolved} ({row['resolved_pairs']}) |"
        )
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("train", "score", "decide"))
    parser.add_argument("--data-root", help="the folder holding MNIST (train, score)")
    parser.add_argument("--runs", type=Path, default=RUNS, help=f"where the six {FULL}-epoch runs train")
    parser.add_argument("--grid", type=Path, default=GRID, help="the grid's seed-0 multirun (quality_grid.py)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--override", nargs="*", default=[], help="more config overrides (tests: data=synthetic ...)")
    args = parser.parse_args(argv)
    if args.step in ("train", "score") and not args.data_root:
        parser.error(f"{args.step} needs --data-root <the folder holding MNIST>")
    return {"train": train_all, "score": score_all, "decide": decide}[args.step](args)


if __name__ == "__main__":
    main()

"""The results table of experiments/likelihood/README.md, from the committed run directories.

    python experiments/likelihood/table.py            # reads runs/<experiment>[-d<divisor>]-seed<N>/{evals/ or eval.json,metrics.json,checkpoints/last.pt}

A row is an experiment at one schedule (`optim.stage_divisor`); runs of other divisors than the
table's main one are named with their divisor, e.g. runs/burda_vae-d10-seed0.

Each run's evaluation is what `python -m vae.evaluate run=<run> checkpoint=last iwae_k=5000` wrote
(fp32, the whole test set binarized once); re-running that command reproduces it. The table reads that
evaluation (`WANTED`) from evals/, or from eval.json for a run evaluated before evals/ existed, says on
stderr which file it read, and refuses a run that has evaluations but not that one.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch

from vae.runs import describe_eval, find_eval, run_evals

HERE = Path(__file__).resolve().parent
# The evaluation behind every row: Burda et al.'s k on the whole test set, in fp32, of the final weights.
WANTED = {"checkpoint": "last", "split": "test", "iwae_k": 5000, "precision": "fp32", "num_images": 10000}
# Burda et al. (2015), Table 1, MNIST, one stochastic layer, NLL (k = 5000 evaluation).
BURDA = {"burda_vae": ("VAE", 86.76), "burda_iwae": ("IWAE, k = 5", 85.54)}


def _mean_sd(values: list[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def rows() -> list[dict]:
    by_experiment = defaultdict(list)
    for run in sorted((HERE / "runs").iterdir()):
        if not run_evals(run):
            print(f"{run.name}: not evaluated, left out", file=sys.stderr)
            continue
        found = find_eval(run, **WANTED)
        if found is None:
            have = "; ".join(
                f"{e.path.relative_to(run).as_posix()} ({describe_eval(e.results)})" for e in run_evals(run)
            )
            raise SystemExit(
                f"error: {run} has no evaluation with {describe_eval(WANTED)} (it has: {have}); "
                f"python -m vae.evaluate run={run} checkpoint=last iwae_k=5000 writes it"
            )
        print(f"{run.name}: read {found.path.relative_to(run).as_posix()}", file=sys.stderr)
        experiment = re.sub(r"-d\d+$", "", run.name.rsplit("-seed", 1)[0])
        evaluation = found.results
        metrics = json.loads((run / "metrics.json").read_text())
        config = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["config"]
        by_experiment[experiment, float(config["optim"]["stage_divisor"])].append(
            {
                "seed": config["seed"],
                "nll": evaluation["iwae_nll_nats"],
                "neg_elbo": evaluation["neg_elbo_nats"],
                "active": evaluation["active_units"],
                "k": evaluation["iwae_k"],
                "images": evaluation["num_images"],
                "precision": evaluation["precision"],
                "epochs": metrics["epoch"],
                "divisor": config["optim"]["stage_divisor"],
                "minutes": metrics["wall_seconds"] / 60,
            }
        )
    # the paper's order (VAE before IWAE), then the longest schedule first
    order = sorted(by_experiment, key=lambda key: (list(BURDA).index(key[0]) if key[0] in BURDA else 99, key[1]))
    return [{"experiment": key[0], "runs": by_experiment[key]} for key in order]


def main() -> None:
    print(
        "| row | seeds | test NLL bound, k = 5000 (nats) | test -ELBO (nats) | active units (of 50) "
        "| epochs (divisor) | training minutes per run | Burda et al. |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows():
        runs = row["runs"]
        assert all(r["k"] == 5000 and r["images"] == 10000 and r["precision"] == "fp32" for r in runs), runs
        label, published = BURDA.get(row["experiment"], (row["experiment"], float("nan")))
        print(
            f"| {label} (`experiment={row['experiment']}`) | {len(runs)} ({', '.join(str(r['seed']) for r in runs)}) "
            f"| {_mean_sd([r['nll'] for r in runs])} | {_mean_sd([r['neg_elbo'] for r in runs])} "
            f"| {_mean_sd([r['active'] for r in runs], 1)} | {runs[0]['epochs']} ({runs[0]['divisor']:g}) "
            f"| {_mean_sd([r['minutes'] for r in runs], 1)} | {published} |"
        )


if __name__ == "__main__":
    main()

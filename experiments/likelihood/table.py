"""The results table of experiments/likelihood/README.md, from the committed run directories.

    python experiments/likelihood/table.py            # reads runs/<experiment>[-d<divisor>]-seed<N>/{evals/ or eval.json,metrics.json,config.json} (no weights)

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

from vae.runs import describe_eval, find_eval, run_evals

HERE = Path(__file__).resolve().parent
# The evaluation behind every row: Burda et al.'s k on the whole test set, in fp32, of the final weights.
WANTED = {"checkpoint": "last", "split": "test", "iwae_k": 5000, "precision": "fp32", "num_images": 10000}
# Burda et al. (2015), Table 1, MNIST, one stochastic layer, NLL (k = 5000 evaluation).
BURDA = {"burda_vae": ("VAE", 86.76), "burda_iwae": ("IWAE, k = 5", 85.54)}
# The rows beyond Burda et al.'s models, each beside the Table 1 row it has to beat (IWAE, k = 50,
# with as many stochastic layers). Evaluated with k = 5000 where a GPU made it affordable, else
# k = 1000 (2 CPU cores; a looser bound, which can only overstate the NLL): the table says which.
BEYOND = {
    "burda_resnet": ("ResNet, one stochastic layer", "IWAE k = 50, one layer", 84.78),
    "burda_hvae": ("hierarchical, two stochastic layers", "IWAE k = 50, two layers", 82.90),
}
# The evaluation read: the first of these (k, precision) a run has. bf16 only where fp32 is absent: on a
# CPU with native bf16 it is 2-3x faster, and its bias against fp32 is measured on a subset
# (bf16_bias_resnet_hvae.json) and stated beside the row.
BEYOND_EVALS = ((5000, "fp32"), (5000, "bf16"), (1000, "fp32"), (1000, "bf16"))


# Published rows on dynamically binarized MNIST (test NLL, nats), for the like-for-like table: the
# paper's own row name, how its bound was estimated, the model class and where the number was read.
# "paper" marks a number read in the paper's text; "quoted" one read where another paper quotes it;
# the rows whose number could not be read in a paper offline are not listed (see the README).
LITERATURE = (
    {
        "row": "Burda et al. 2015, Table 1: VAE, 1 stochastic layer, k = 1",
        "nll": 86.76,
        "objective": "ELBO",
        "model": "MLP 784-200-200-50 (0.43 M)",
        "epochs": "3,280",
        "k": 5000,
        "read": "read in the paper",
    },
    {
        "row": "Burda et al. 2015, Table 1: IWAE, 1 stochastic layer, k = 5",
        "nll": 85.54,
        "objective": "IWAE, k = 5",
        "model": "MLP 784-200-200-50 (0.43 M)",
        "epochs": "3,280",
        "k": 5000,
        "read": "read in the paper",
    },
    {
        "row": "Burda et al. 2015, Table 1: IWAE, 1 stochastic layer, k = 50",
        "nll": 84.78,
        "objective": "IWAE, k = 50",
        "model": "MLP 784-200-200-50 (0.43 M)",
        "epochs": "3,280",
        "k": 5000,
        "read": "read in the paper",
    },
    {
        "row": "Burda et al. 2015, Table 1: VAE, 2 stochastic layers, k = 1",
        "nll": 85.33,
        "objective": "ELBO",
        "model": "MLP, layers of 100 and 50",
        "epochs": "3,280",
        "k": 5000,
        "read": "read in the paper",
    },
    {
        "row": "Burda et al. 2015, Table 1: IWAE, 2 stochastic layers, k = 50",
        "nll": 82.90,
        "objective": "IWAE, k = 50",
        "model": "MLP, layers of 100 and 50",
        "epochs": "3,280",
        "k": 5000,
        "read": "read in the paper",
    },
    {
        "row": "Kingma et al. 2016 (IAF), Table 1: Diagonal covariance",
        "nll": 81.08,
        "objective": "ELBO",
        "model": "conv with ResNet blocks, one 32-d Gaussian layer",
        "epochs": "?",
        "k": 128,
        "read": "quoted (its Table 1's log p(x) column, read in two summaries of the paper)",
    },
    {
        "row": "Kingma et al. 2016 (IAF), Table 1: IAF (Depth = 8, Width = 1920)",
        "nll": 79.10,
        "objective": "ELBO",
        "model": "the same, with an 8-step IAF posterior",
        "epochs": "?",
        "k": 128,
        "read": "read in the paper",
    },
    {
        "row": "Sønderby et al. 2016 (Ladder VAE), as quoted in IAF's Table 1 and VLAE's Table 2",
        "nll": 81.74,
        "objective": "ELBO (warm-up, batch norm)",
        "model": "MLP, 5 stochastic layers, top-down inference",
        "epochs": "?",
        "k": None,
        "read": "quoted (k not read; the authors' code evaluates at 5,000)",
    },
)


def _interval(values: list[float]) -> tuple[float, float] | None:
    """The 95 % t-interval of the mean (None for one value)."""
    if len(values) < 2:
        return None
    from scipy import stats

    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return statistics.mean(values) - half, statistics.mean(values) + half


def _mean_sd(values: list[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _experiment(run: Path) -> str:
    return re.sub(r"-d\d+$", "", run.name.rsplit("-seed", 1)[0])


def rows() -> list[dict]:
    """The rows of Burda et al.'s models (every experiment not in BEYOND), read at k = 5000."""
    by_experiment = defaultdict(list)
    for run in sorted((HERE / "runs").iterdir()):
        if _experiment(run) in BEYOND:
            continue
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
        experiment = _experiment(run)
        evaluation = found.results
        metrics = json.loads((run / "metrics.json").read_text())
        config = json.loads((run / "config.json").read_text())
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


def beyond_rows() -> list[dict]:
    """The ResNet and hierarchical rows: each run's whole-test-set evaluation of last.pt, the first of
    BEYOND_EVALS it has, with the machine it trained on (its run.json)."""
    by_experiment = defaultdict(list)
    for run in sorted((HERE / "runs").iterdir()):
        experiment = _experiment(run)
        if experiment not in BEYOND:
            continue
        wanted = {key: value for key, value in WANTED.items() if key not in ("iwae_k", "precision")}
        found = next(
            (e for k, p in BEYOND_EVALS if (e := find_eval(run, **wanted, iwae_k=k, precision=p)) is not None), None
        )
        if found is None:
            settings = " or ".join(f"k = {k} ({p})" for k, p in BEYOND_EVALS)
            print(f"{run.name}: no whole-test-set evaluation at {settings}, left out", file=sys.stderr)
            continue
        print(f"{run.name}: read {found.path.relative_to(run).as_posix()}", file=sys.stderr)
        evaluation, metrics = found.results, json.loads((run / "metrics.json").read_text())
        machine = json.loads((run / "run.json").read_text())["machine"] if (run / "run.json").is_file() else {}
        config = json.loads((run / "config.json").read_text())
        by_experiment[experiment].append(
            {
                "seed": config["seed"],
                "nll": evaluation["iwae_nll_nats"],
                "neg_elbo": evaluation["neg_elbo_nats"],
                "active": evaluation.get("active_units_per_layer", [evaluation["active_units"]]),
                "k": evaluation["iwae_k"],
                "precision": evaluation["precision"],
                "epochs": metrics["epoch"],
                "minutes": metrics["wall_seconds"] / 60,
                "device": machine.get("gpu") or "CPU",
                "cpu": f"{machine.get('cpu', '?')} ({'native' if machine.get('cpu_bf16') else 'no'} bf16)",
            }
        )
    return [{"experiment": name, "runs": by_experiment[name]} for name in BEYOND if by_experiment[name]]


def print_beyond(rows_: list[dict]) -> None:
    print(
        "| row | seeds | test NLL bound (nats), k (precision) | test -ELBO (nats) | active units per layer, from x up "
        "| epochs | training minutes per run | device | CPU | Burda et al. |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for row in rows_:
        runs, (label, compared, published) = row["runs"], BEYOND[row["experiment"]]
        ks = sorted({(r["k"], r["precision"]) for r in runs})
        layers = len(runs[0]["active"])
        active = ", ".join(_mean_sd([r["active"][i] for r in runs], 1) for i in range(layers))
        print(
            f"| {label} (`experiment={row['experiment']}`) | {len(runs)} ({', '.join(str(r['seed']) for r in runs)}) "
            f"| {_mean_sd([r['nll'] for r in runs])}, {'/'.join(f'k = {k} ({p})' for k, p in ks)} | {_mean_sd([r['neg_elbo'] for r in runs])} "
            f"| {active} | {'/'.join(sorted({str(r['epochs']) for r in runs}))} | {_mean_sd([r['minutes'] for r in runs], 1)} "
            f"| {', '.join(sorted({r['device'] for r in runs}))} | {', '.join(sorted({r['cpu'] for r in runs}))} "
            f"| {published:.2f} ({compared}) |"
        )


# Each project row beside the published rows it matches: on the objective (ELBO against Burda's VAE,
# IWAE against Burda's IWAE) and on the model class (the conv and hierarchical rows of the field).
MATCHES = {
    "burda_vae": ("Burda et al. 2015, Table 1: VAE, 1 stochastic layer, k = 1",),
    "burda_iwae": ("Burda et al. 2015, Table 1: IWAE, 1 stochastic layer, k = 5",),
    "burda_resnet": (
        "Burda et al. 2015, Table 1: VAE, 1 stochastic layer, k = 1",
        "Burda et al. 2015, Table 1: IWAE, 1 stochastic layer, k = 50",
        "Kingma et al. 2016 (IAF), Table 1: Diagonal covariance",
    ),
    "burda_hvae": (
        "Burda et al. 2015, Table 1: VAE, 2 stochastic layers, k = 1",
        "Burda et al. 2015, Table 1: IWAE, 2 stochastic layers, k = 50",
        "Sønderby et al. 2016 (Ladder VAE), as quoted in IAF's Table 1 and VLAE's Table 2",
    ),
}
PARAMETERS = {"burda_vae": "0.43 M", "burda_iwae": "0.43 M", "burda_resnet": "3.71 M", "burda_hvae": "5.54 M"}
OBJECTIVES = {"burda_vae": "ELBO", "burda_iwae": "IWAE, k = 5", "burda_resnet": "ELBO", "burda_hvae": "ELBO"}


def verdict(values: list[float], published: float) -> str:
    """Below, above or a tie (the 95 % t-interval holds the published number; one seed: no interval)."""
    interval = _interval(values)
    mean = statistics.mean(values)
    if interval is None:
        return f"{mean - published:+.2f} (one seed)"
    low, high = interval
    if low <= published <= high:
        return f"tie ({mean - published:+.2f}; interval {low:.2f}-{high:.2f})"
    return f"{mean - published:+.2f} (interval {low:.2f}-{high:.2f})"


def like_for_like(main_rows: list[dict], beyond: list[dict]) -> list[str]:
    """The like-for-like table: every project row, then the published rows it matches, each with the
    difference (project minus published, nats) and whether the 95 % interval over seeds holds it."""
    literature = {entry["row"]: entry for entry in LITERATURE}
    lines = [
        "| row | parameters | training objective | epochs | evaluation k (precision) | test NLL (nats) | project - published |",
        "|---|---|---|---:|---|---:|---|",
    ]
    for row in [*main_rows, *beyond]:
        runs, experiment = row["runs"], row["experiment"]
        values = [r["nll"] for r in runs]
        k = "/".join(sorted({f"{r['k']} ({r.get('precision', 'fp32')})" for r in runs}))
        epochs = "/".join(sorted({str(r["epochs"]) for r in runs}))
        seeds = f"{len(runs)} seed{'s' if len(runs) > 1 else ''}"
        lines.append(
            f"| **this project: `experiment={experiment}`** ({seeds}) | {PARAMETERS.get(experiment, '?')} "
            f"| {OBJECTIVES.get(experiment, '?')} | {epochs} | {k} | **{_mean_sd(values)}** | |"
        )
        for name in MATCHES.get(experiment, ()):
            entry = literature[name]
            k_text = f"{entry['k']:,}" if entry["k"] else "not read"
            lines.append(
                f"| {name} | {entry['model']} | {entry['objective']} | {entry['epochs']} | {k_text} "
                f"| {entry['nll']:.2f} | {verdict(values, entry['nll'])} |"
            )
    lines.append("")
    lines += [
        f"- {entry['row']}: {entry['read']}" for entry in LITERATURE if any(entry["row"] in m for m in MATCHES.values())
    ]
    return lines


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
    beyond = beyond_rows()
    if beyond:
        print()
        print_beyond(beyond)
    print()
    print("\n".join(like_for_like(rows(), beyond)))


if __name__ == "__main__":
    main()

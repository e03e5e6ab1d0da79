"""Is a sweep's epoch budget enough? The kl_weight = 1e-3 jobs at budgets 6, 12, 24, 48: curves and doubling gains.

    python experiments/sweep_kl_latent/budget.py collect <job dir> ...   # writes budget.json from run directories
    python experiments/sweep_kl_latent/budget.py merge <job dir> ...     # adds runs to budget.json (same run: replaced)
    python experiments/sweep_kl_latent/budget.py plot                     # budget.png and the table, from budget.json

Every run uses experiment=sweep_kl_latent's schedule (Adam warming up to 3e-3 over 200 steps,
cosine decay to 0 at the run's last step), so a budget is a whole schedule, not a longer run
of the same one. The criterion (issue 13): doubling the budget improves the final val_loss by
less than 1 %. Runs on different devices are never paired: training is not bit-reproducible
across devices (bf16 kernels), so a doubling is judged on one device; a run's device comes from
its run.json (runs from before it was recorded ran on a CPU).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent
CRITERION = 0.01


def collect(job_dirs: list[Path]) -> list[dict]:
    runs = []
    for job in job_dirs:
        config = OmegaConf.load(job / ".hydra" / "config.yaml")
        metrics = json.loads((job / "metrics.json").read_text())
        where = json.loads((job / "run.json").read_text())["runtime"]["device"].split(":")[0]  # cuda:1 -> cuda
        if metrics["epoch"] < config.epochs:
            raise SystemExit(f"error: {job} is unfinished ({metrics['epoch']} of {config.epochs} epochs)")
        runs.append(
            {
                "kl_weight": config.kl_weight,
                "latent_dim": config.latent_dim,
                "seed": config.seed,
                "budget": config.epochs,
                "device": where,
                "val_loss": [row["val_loss"] for row in metrics["history"]],
                "val_neg_elbo_nats": [row["val_neg_elbo_nats"] for row in metrics["history"]],
                "epoch_seconds": [row["epoch_seconds"] for row in metrics["history"]],
            }
        )
    return runs


def device(run: dict) -> str:
    """cpu or cuda; budget.json's runs from before the device was recorded ran on a CPU."""
    return run.get("device", "cpu")


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """`old` with `new` added; a new run with an old one's settings (kl_weight, latent_dim, seed, budget, device) replaces it."""
    key = lambda run: (run["kl_weight"], run["latent_dim"], run["seed"], run["budget"], device(run))  # noqa: E731
    replaced = {key(run) for run in new}
    runs = [run for run in old if key(run) not in replaced] + new
    return sorted(runs, key=key)


def doubling_table(runs: list[dict]) -> list[dict]:
    """Final val_loss per (latent_dim, seed, device) and budget, and the relative gain of each doubling."""
    final = defaultdict(dict)
    for run in runs:
        final[(run["latent_dim"], run["seed"], device(run))][run["budget"]] = run["val_loss"][-1]
    rows = []
    for (latent_dim, seed, where), by_budget in sorted(final.items()):
        for budget in sorted(by_budget):
            if 2 * budget in by_budget:
                gain = (by_budget[budget] - by_budget[2 * budget]) / by_budget[budget]
                rows.append(
                    {
                        "latent_dim": latent_dim,
                        "seed": seed,
                        "device": where,
                        "budget": budget,
                        "val_loss": by_budget[budget],
                        "doubled": by_budget[2 * budget],
                        "gain": gain,
                        "converged": gain < CRITERION,
                    }
                )
    return rows


def mean_gains(rows: list[dict]) -> list[dict]:
    """The doubling gain averaged over seeds, per (latent_dim, budget, device): the criterion with its spread."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row["latent_dim"], row["budget"], row["device"])].append(row["gain"])
    return [
        {
            "latent_dim": latent_dim,
            "budget": budget,
            "device": where,
            "seeds": len(gains),
            "gain": statistics.mean(gains),
            "sd": statistics.stdev(gains) if len(gains) > 1 else None,
            "converged": statistics.mean(gains) < CRITERION,
        }
        for (latent_dim, budget, where), gains in sorted(groups.items())
    ]


def plot(runs: list[dict]) -> None:
    from vae.figures import plt, save

    dims = sorted({run["latent_dim"] for run in runs})
    fig, axes = plt.subplots(1, len(dims), figsize=(5.5 * len(dims), 4.2), squeeze=False, layout="constrained")
    budgets = sorted({r["budget"] for r in runs})
    colors = dict(
        zip(budgets, plt.cm.viridis([i / max(1, len(budgets) - 1) for i in range(len(budgets))]), strict=True)
    )
    for ax, latent_dim in zip(axes[0], dims, strict=True):
        labelled = set()  # one legend entry per budget and device; its seeds share the colour and line style
        chosen = (r for r in runs if r["latent_dim"] == latent_dim)
        for run in sorted(chosen, key=lambda r: (device(r), r["budget"], r["seed"])):
            epochs = range(1, len(run["val_loss"]) + 1)
            group = (run["budget"], device(run))
            label = None if group in labelled else f"budget {run['budget']}, {device(run)}"
            labelled.add(group)
            style = "--" if device(run) == "cuda" else "-"
            ax.plot(epochs, run["val_loss"], label=label, lw=1.1, ls=style, color=colors[run["budget"]])
        ax.set_title(f"kl_weight 1e-3, latent_dim {latent_dim}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("val_loss (held-out split)")
        ax.set_xscale("log", base=2)
        finals = [r["val_loss"][-1] for r in runs if r["latent_dim"] == latent_dim]
        ax.set_ylim(min(finals) * 0.98, min(finals) * 1.15)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        "experiment=sweep_kl_latent: each budget is its own cosine schedule; bf16 training; "
        "solid: 2-core EPYC, dashed: H100; one line per seed"
    )
    save(fig, HERE / "budget.png")


def main(argv: list[str]) -> None:
    if argv[:1] in (["collect"], ["merge"]):
        runs = collect([Path(p) for p in argv[1:]])
        if argv[0] == "merge":
            runs = merge(json.loads((HERE / "budget.json").read_text())["runs"], runs)
        (HERE / "budget.json").write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    runs = json.loads((HERE / "budget.json").read_text())["runs"]
    plot(runs)
    rows = doubling_table(runs)
    print("| latent_dim | seed | device | budget | val_loss | doubled budget | gain | < 1 % |")
    print("|---:|---:|---|---:|---:|---:|---:|:---:|")
    for row in rows:
        print(
            f"| {row['latent_dim']} | {row['seed']} | {row['device']} | {row['budget']} | {row['val_loss']:.4f} "
            f"| {row['doubled']:.4f} | {100 * row['gain']:.2f} % | {'yes' if row['converged'] else 'no'} |"
        )
    print("\n| latent_dim | device | budget | seeds | mean gain ± sd | < 1 % |")
    print("|---:|---|---:|---:|---:|:---:|")
    for row in mean_gains(rows):
        spread = f" ± {100 * row['sd']:.2f}" if row["sd"] is not None else ""
        print(
            f"| {row['latent_dim']} | {row['device']} | {row['budget']} | {row['seeds']} "
            f"| {100 * row['gain']:.2f}{spread} % | {'yes' if row['converged'] else 'no'} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])

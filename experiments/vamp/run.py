"""The VampPrior against the standard prior on Burda et al.'s MLP (the VampPrior paper's own setting), a short budget.

    python experiments/vamp/run.py --data-root <MNIST dir> [--epochs 10] [--seed 0] [--threads 1]
    python experiments/vamp/run.py --table                 # the README's table from results.json

Two runs of `experiment=burda_vae` (the MLP 784-200-200-50, dynamically binarized MNIST, batch 20, Burda et
al.'s schedule for its first --epochs epochs), differing only in `prior=standard` or `prior=vamp` (500
pseudo-inputs). Compared on the held-out -ELBO per epoch (the 400 validation images; the VampPrior's KL is a
one-sample estimate, the standard prior's in closed form); the test split is not read. One seed, a short
budget: a first result, not the paper's comparison (which trains to convergence and reports the IWAE bound).
Writes results.json and vamp.png (the two held-out curves) beside this script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: the comparisons' shared code
import comparison  # noqa: E402


def table(record: dict) -> str:
    rows = ["| prior | held-out -ELBO after each epoch (nats) | last | KL |", "| --- | --- | --- | --- |"]
    for name, run in record["runs"].items():
        curve = ", ".join(f"{value:.2f}" for value in run["val_neg_elbo_nats"])
        rows.append(f"| `prior={name}` | {curve} | **{run['val_neg_elbo_nats'][-1]:.2f}** | {run['kl_estimator']} |")
    return "\n".join(rows)


def figure(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, run in record["runs"].items():
        epochs = range(1, len(run["val_neg_elbo_nats"]) + 1)
        ax.plot(epochs, run["val_neg_elbo_nats"], marker="o", label=f"prior={name}")
    ax.set(xlabel="epoch", ylabel="held-out -ELBO (nats)", title="burda_vae's MLP, seed 0")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = comparison.parser(__doc__, epochs=10, runs_dir="vamp", out=HERE / "results.json", experiment="burda_vae")
    parser.add_argument("--components", type=int, default=500, help="the VampPrior's pseudo-inputs (the paper's 500)")
    args, shown = comparison.parse(parser, argv, table)
    if shown is not None:
        return shown
    base = [f"experiment={args.experiment}"] if args.experiment else []
    base = comparison.run_overrides(args, [*base, "precision=fp32"])
    runs = {}
    priors = {"standard": ["prior=standard"], "vamp": ["prior=vamp", f"prior.components={args.components}"]}
    for name, prior in priors.items():
        run_dir = args.runs_dir / f"{name}-seed{args.seed}"
        train_seconds = comparison.train_once([*base, *prior], run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        runs[name] = {
            "overrides": [*base, *prior],
            "val_neg_elbo_nats": [record["val_neg_elbo_nats"] for record in metrics["history"]],
            "kl_estimator": metrics["kl_estimator"],
            "train_seconds": train_seconds,
        }
        print(f"prior={name}: held-out -ELBO {runs[name]['val_neg_elbo_nats'][-1]:.2f} nats", flush=True)
    difference = runs["vamp"]["val_neg_elbo_nats"][-1] - runs["standard"]["val_neg_elbo_nats"][-1]
    record = comparison.write_record(
        "experiments/vamp/run.py", args, argv, {"runs": runs, "vamp_minus_standard_nats": difference}
    )
    figure(record, args.out.parent / "vamp.png")
    return record


if __name__ == "__main__":
    main()

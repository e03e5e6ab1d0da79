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

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs-dir", type=Path, default=Path("outputs") / "vamp")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--components", type=int, default=500, help="the VampPrior's pseudo-inputs (the paper's 500)")
    parser.add_argument("--experiment", default="burda_vae", help="the runs' experiment ('' for none: tests)")
    parser.add_argument("--override", nargs="*", default=[], help="more overrides for both runs (tests)")
    parser.add_argument("--table", action="store_true", help="print the README's table from --out and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return json.loads(args.out.read_text())
    if not args.data_root:
        parser.error("--data-root is required (MNIST's folder)")
    from vae.config import compose
    from vae.runtime import git_commit, machine_info
    from vae.train import train

    base = [f"experiment={args.experiment}"] if args.experiment else []
    base += [f"data.root={args.data_root}", f"epochs={args.epochs}", f"seed={args.seed}"]
    base += ["precision=fp32", f"threads={args.threads}"]
    replaced = {override.split("=", 1)[0] for override in args.override}  # an --override replaces a key of base
    base = [o for o in base if o.split("=", 1)[0] not in replaced] + args.override
    runs = {}
    priors = {"standard": ["prior=standard"], "vamp": ["prior=vamp", f"prior.components={args.components}"]}
    for name, prior in priors.items():
        run_dir = args.runs_dir / f"{name}-seed{args.seed}"
        start = time.monotonic()
        if not (run_dir / "metrics.json").is_file():
            train(compose([*base, *prior]), run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        runs[name] = {
            "overrides": [*base, *prior],
            "val_neg_elbo_nats": [record["val_neg_elbo_nats"] for record in metrics["history"]],
            "kl_estimator": metrics["kl_estimator"],
            "train_seconds": time.monotonic() - start,
        }
        print(f"prior={name}: held-out -ELBO {runs[name]['val_neg_elbo_nats'][-1]:.2f} nats", flush=True)
    record = {
        "command": "python experiments/vamp/run.py "
        + " ".join("<MNIST dir>" if a == args.data_root else a for a in (sys.argv[1:] if argv is None else argv)),
        "runs": runs,
        "vamp_minus_standard_nats": runs["vamp"]["val_neg_elbo_nats"][-1] - runs["standard"]["val_neg_elbo_nats"][-1],
        "seed": args.seed,
        "machine": machine_info("cpu"),
        "git": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    figure(record, args.out.parent / "vamp.png")
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()

"""beta-TCVAE against the beta-VAE at the same beta on MNIST: total correlation, mutual information, -ELBO, traversals.

    python experiments/beta_tcvae/run.py --data-root <MNIST dir> [--beta 6] [--epochs 10] [--seed 0] [--threads 1]
    python experiments/beta_tcvae/run.py --table            # the README's table from results.json

Two runs of `experiment=burda_vae`'s MLP and data (784-200-200, tanh, dynamically binarized MNIST) with
latent_dim 10 and batch 128 (minibatch-weighted sampling needs more than Burda's 20 images per batch),
`reduction=sum`, for --epochs epochs of Burda's schedule: the beta-VAE (`objective=elbo kl_weight=beta`)
and beta-TCVAE (`objective=beta_tcvae objective.beta=beta`, alpha = gamma = 1). Both are then measured the
same way on the held-out validation images (the test split is not read): the -ELBO (beta 1), and MI, TC and
dimension-wise KL by the same minibatch-weighted-sampling estimator (vae/objectives/beta_tcvae.py, alpha =
beta = gamma = 1, batches of 128). Chen et al.'s claim: at the same beta, penalising TC alone gives a lower
TC for less loss of likelihood than penalising the whole KL. One seed: a first result.
Writes results.json and traversals.png (each latent dim swept from -3 to 3 around one held-out image's
posterior mean, both models) beside this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TERMS = ("neg_elbo_nats", "rec_nats", "kl_nats", "mi_nats", "tc_nats", "dwkl_nats")


def table(record: dict) -> str:
    rows = [
        "| objective | held-out -ELBO | reconstruction | KL | MI | TC | dimension-wise KL |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in record["runs"].values():
        rows.append(f"| {run['label']} | " + " | ".join(f"{run['held_out'][term]:.2f}" for term in TERMS) + " |")
    return "\n".join(rows)


def measure(run_dir: Path, data_root: str) -> dict:
    """The held-out -ELBO and the MWS decomposition of the KL, alpha = beta = gamma = 1, on the validation split."""
    from vae.objectives.beta_tcvae import BetaTCVAE
    from vae.runs import load_run, run_data
    from vae.step import dataset_loss_terms

    loaded = load_run(run_dir, checkpoint="last")
    splits = run_data(loaded, data_root=data_root)
    terms = dataset_loss_terms(
        loaded.model,
        splits.val.images,
        objective=BetaTCVAE(1.0, 1.0, 1.0, loaded.model.likelihood),
        batch_size=128,
        num_train=len(splits.train.images),
    )
    return {term: terms[term] for term in TERMS}


def traversals(runs: dict, data_root: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from vae.data import to_model_input
    from vae.runs import load_run, run_data

    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 5))
    for ax, run in zip(axes, runs.values(), strict=True):
        loaded = load_run(run["run_dir"], checkpoint="last")
        image = run_data(loaded, data_root=data_root).val.images[:1]
        with torch.no_grad():
            mean = loaded.model.encode(to_model_input(image)).mean[0]
            values = torch.linspace(-3, 3, 7)
            z = mean.repeat(len(mean), len(values), 1)  # (L, 7, L)
            for dim in range(len(mean)):
                z[dim, :, dim] = values
            images = loaded.model.likelihood.mean(loaded.model.decode(z.reshape(-1, len(mean)))).float()
        rows = images.reshape(len(mean), len(values), *images.shape[-2:])
        sheet = torch.cat([torch.cat(list(row), dim=1) for row in rows], dim=0)
        ax.imshow(sheet.numpy(), cmap="gray", vmin=0, vmax=1)
        title = run["label"].split(" (")[0] + ", beta " + run["label"].rsplit("=", 1)[-1].rstrip("`)")
        ax.set(title=title, xticks=[], yticks=[], ylabel="latent dim (rows), -3 .. 3 (columns)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root")
    parser.add_argument("--beta", type=float, default=6.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs-dir", type=Path, default=Path("outputs") / "beta_tcvae")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
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
    base += [f"data.root={args.data_root}", f"epochs={args.epochs}", f"seed={args.seed}", "latent_dim=10"]
    base += ["batch_size=128", "reduction=sum", "precision=fp32", f"threads={args.threads}"]
    replaced = {override.split("=", 1)[0] for override in args.override}  # an --override replaces a key of base
    base = [o for o in base if o.split("=", 1)[0] not in replaced] + args.override
    objectives = {
        "beta_vae": (
            f"beta-VAE (`objective=elbo kl_weight={args.beta:g}`)",
            ["objective=elbo", f"kl_weight={args.beta}"],
        ),
        "beta_tcvae": (
            f"beta-TCVAE (`objective=beta_tcvae objective.beta={args.beta:g}`)",
            ["objective=beta_tcvae", "kl_weight=1", f"objective.beta={args.beta}"],
        ),
    }
    runs = {}
    for name, (label, overrides) in objectives.items():
        run_dir = args.runs_dir / f"{name}-seed{args.seed}"
        start = time.monotonic()
        if not (run_dir / "metrics.json").is_file():
            train(compose([*base, *overrides]), run_dir)
        runs[name] = {
            "label": label,
            "overrides": [*base, *overrides],
            "run_dir": str(run_dir),
            "held_out": measure(run_dir, args.data_root),
            "train_seconds": time.monotonic() - start,
        }
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[name]["held_out"].items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    traversals(runs, args.data_root, args.out.parent / "traversals.png")
    record = {
        "command": "python experiments/beta_tcvae/run.py "
        + " ".join("<MNIST dir>" if a == args.data_root else a for a in (sys.argv[1:] if argv is None else argv)),
        "beta": args.beta,
        "runs": {name: {k: v for k, v in run.items() if k != "run_dir"} for name, run in runs.items()},
        "seed": args.seed,
        "machine": machine_info("cpu"),
        "git": git_commit(),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()

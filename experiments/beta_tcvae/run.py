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

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: the comparisons' shared code
import comparison  # noqa: E402

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
    parser = comparison.parser(
        __doc__, epochs=10, runs_dir="beta_tcvae", out=HERE / "results.json", experiment="burda_vae"
    )
    parser.add_argument("--beta", type=float, default=6.0)
    args, shown = comparison.parse(parser, argv, table)
    if shown is not None:
        return shown
    base = [f"experiment={args.experiment}"] if args.experiment else []
    base += ["latent_dim=10", "batch_size=128", "reduction=sum", "precision=fp32"]
    base = comparison.run_overrides(args, base)
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
        train_seconds = comparison.train_once([*base, *overrides], run_dir)
        runs[name] = {
            "label": label,
            "overrides": [*base, *overrides],
            "run_dir": str(run_dir),
            "held_out": measure(run_dir, args.data_root),
            "train_seconds": train_seconds,
        }
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[name]["held_out"].items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    traversals(runs, args.data_root, args.out.parent / "traversals.png")
    kept = {name: {k: v for k, v in run.items() if k != "run_dir"} for name, run in runs.items()}
    return comparison.write_record("experiments/beta_tcvae/run.py", args, argv, {"beta": args.beta, "runs": kept})


if __name__ == "__main__":
    main()

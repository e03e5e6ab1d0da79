"""The lecture's argument, measured: lambda = 0 against lambda = 1e-3, side by side.

    python -m vae.train latent_dim=2 kl_weight=0    epochs=5 data.root=... hydra.run.dir=outputs/runs/kl0
    python -m vae.train latent_dim=2 kl_weight=1e-3 epochs=5 data.root=... hydra.run.dir=outputs/runs/kl1e-3
    python experiments/kl_collapse/compare.py outputs/runs/kl0 outputs/runs/kl1e-3 --data-root ... --out experiments/kl_collapse

Writes comparison.png (the decoded latent grid, the test set's mu by class and prior samples
for each run) and comparison.json (the encoder's mean sigma on the test set, the spread of mu,
the validation loss terms, and the reconstruction nats of prior samples' nearest test images).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torchvision.utils import make_grid

from vae.build import build_data
from vae.figures import plt, save
from vae.latent import decode_images, encode_images, grid_latents
from vae.runs import load_run


def summarise(run_dir: Path, data_root: str | None) -> dict:
    loaded = load_run(run_dir)
    config = loaded.checkpoint["config"]
    if data_root:
        config["data"]["root"] = data_root
    test = build_data(config).test
    posterior = encode_images(loaded.model, test.images)
    mu, sigma = posterior.mean, posterior.std
    samples = loaded.model.sample(64, generator=torch.Generator().manual_seed(0))
    # How far prior samples are from real digits: mean squared distance to the nearest test image.
    flat_test = test.images[:5000].float().flatten(1) / 255.0
    nearest = torch.cdist(samples.flatten(1), flat_test).min(1).values.pow(2).mean().item()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "model": loaded.model,
        "mu": mu,
        "labels": test.labels,
        "samples": samples,
        "numbers": {
            "kl_weight": config["kl_weight"],
            "epochs": metrics["epoch"],
            "mean_sigma_test": float(sigma.mean()),
            "median_sigma_test": float(sigma.median()),
            "mu_std_test": mu.std(0).tolist(),
            "mu_abs_max_test": float(mu.abs().max()),
            "val": {k: metrics["val"][k] for k in ("loss", "gen_loss", "kl", "neg_elbo_nats", "rec_nats", "kl_nats")},
            "prior_sample_sq_distance_to_nearest_test_image": nearest,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs=2, type=Path)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("experiments/kl_collapse"))
    args = parser.parse_args()
    runs = [summarise(run, args.data_root) for run in args.runs]
    fig, axes = plt.subplots(2, 3, figsize=(16, 11))
    for row, run in enumerate(runs):
        label = f"λ = {run['numbers']['kl_weight']:g}"
        grid = make_grid(decode_images(run["model"], grid_latents(15, latent_dim=2)), nrow=15, padding=0)
        axes[row][0].imshow(grid[0].numpy(), cmap="gray")
        axes[row][0].set_title(f"{label}: decoded grid, z at N(0,1) quantiles 0.05..0.95")
        axes[row][0].axis("off")
        mu = run["mu"]
        scatter = axes[row][1].scatter(mu[:, 0].numpy(), mu[:, 1].numpy(), c=run["labels"].numpy(), cmap="tab10", s=2)
        axes[row][1].set_title(f"{label}: test mu by digit (mean sigma {run['numbers']['mean_sigma_test']:.3g})")
        axes[row][1].set_xlabel("z[0]")
        axes[row][1].set_ylabel("z[1]")
        fig.colorbar(scatter, ax=axes[row][1], label="digit")
        samples = make_grid(run["samples"], nrow=8, padding=1, pad_value=0.5)
        axes[row][2].imshow(samples[0].numpy(), cmap="gray")
        axes[row][2].set_title(f"{label}: 64 samples z ~ N(0, I)")
        axes[row][2].axis("off")
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    save(fig, args.out / "comparison.png")
    numbers = {str(run["numbers"]["kl_weight"]): run["numbers"] for run in runs}
    (args.out / "comparison.json").write_text(json.dumps(numbers, indent=2))
    print(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()

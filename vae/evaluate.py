"""Evaluation: the loss terms and the negative ELBO in nats over a whole split."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vae.cli import MISSING
from vae.data import to_model_input
from vae.losses import vae_loss
from vae.model import VAE

LOG_2PI = math.log(2 * math.pi)
TERM_NAMES = ("loss", "gen_loss", "kl", "neg_elbo_nats", "rec_nats", "kl_nats")


def autocast_context(device: str, dtype: torch.dtype | None):
    """bf16 autocast on the device when `dtype` is set, else nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@torch.no_grad()
def dataset_loss_terms(
    model: VAE,
    images: torch.Tensor,
    *,
    kl_weight: float,
    gen_loss: str,
    reduction: str,
    batch_size: int = 1000,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Per-image averages of every loss term over `images` (uint8, as the data sets hold them), z drawn with a fixed seed.

    Also `mean_sigma`: the encoder's sigma = exp(0.5 log_var) averaged over images and latent dims.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    totals = torch.zeros(len(TERM_NAMES), dtype=torch.float64)
    sigma_total = 0.0
    for batch in images.split(batch_size):
        x = to_model_input(batch).to(device)  # (B, C, H, W)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        eps = torch.randn(x.shape[0], model.latent_dim, generator=generator).to(device)
        with autocast_context(str(device), autocast_dtype):
            output = model(x, eps)
        terms = vae_loss(
            output.logits, x, output.mu, output.log_var, kl_weight=kl_weight, gen_loss=gen_loss, reduction=reduction
        )
        totals += torch.stack([t.detach().double().cpu() for t in terms]) * x.shape[0]
        sigma_total += float(torch.exp(0.5 * output.log_var.float()).sum())
    model.train(was_training)
    results = {name: float(value) for name, value in zip(TERM_NAMES, totals / images.shape[0])}
    results["mean_sigma"] = sigma_total / (images.shape[0] * model.latent_dim)
    return results


# Decodes per call in the IWAE loop: on CPU, 512 keep the decoder's activations in the cache and
# are 3x faster than 4096 (experiments/bench/README.md); a GPU wants large calls.
DECODES_PER_CALL = {"cpu": 512, "cuda": 16384}


def log_importance_weights(
    model: VAE, x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) for z = mu + sigma * eps: eps (K, B, L) -> (K, B).

    The Bernoulli likelihood is BCE with logits summed over pixels; on gray-level images it is
    the same bound under BCE on gray levels, not a likelihood. It is computed as
    log p(x|z) = sum_p x_p * l_p - softplus(l_p), the x-term one batched matmul, so the K copies
    of x are never materialised.
    """
    num_samples, batch = eps.shape[:2]
    sigma = torch.exp(0.5 * log_var)
    z = mu.unsqueeze(0) + sigma.unsqueeze(0) * eps  # (K, B, L)
    # Decode image-major, so each image's K logits are one contiguous (K, P) block.
    logits = model.decode(z.transpose(0, 1).reshape(batch * num_samples, -1))  # (B*K, C, H, W)
    logits = logits.float().reshape(batch, num_samples, -1)  # (B, K, P); a view for C = 1 or NCHW logits
    target = x.float().reshape(batch, -1, 1)  # (B, P, 1)
    log_px_z = torch.bmm(logits, target).squeeze(-1) - F.softplus(logits).sum(-1)  # (B, K)
    log_pz = (-0.5 * (z.pow(2) + LOG_2PI)).sum(-1)
    log_qz_x = (-0.5 * (eps.pow(2) + LOG_2PI) - 0.5 * log_var.unsqueeze(0)).sum(-1)
    return log_px_z.t() + log_pz - log_qz_x


@torch.no_grad()
def iwae_log_likelihood(
    model: VAE,
    x: torch.Tensor,
    *,
    num_samples: int,
    chunk: int = 100,
    generator: torch.Generator | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Burda et al.'s bound log (1/K) sum_k p(x, z_k) / q(z_k|x) per image: (B,). K=1 is a one-sample ELBO."""
    device = x.device
    mu, log_var = model.encode(x)
    mu, log_var = mu.float(), log_var.float()
    log_weights = []
    for start in range(0, num_samples, chunk):
        count = min(chunk, num_samples - start)
        eps = torch.randn(count, *mu.shape, generator=generator).to(device)
        with autocast_context(str(device), autocast_dtype):
            log_weights.append(log_importance_weights(model, x, mu, log_var, eps))
    log_weights = torch.cat(log_weights)  # (K, B)
    return torch.logsumexp(log_weights, 0) - math.log(num_samples)


def active_units(mu: torch.Tensor, *, threshold: float = 0.01) -> int:
    """Latent dims whose posterior mean varies over the data: Var_x(E[z_u|x]) > threshold (Burda et al. 2015)."""
    return int((mu.var(0) > threshold).sum())


@torch.no_grad()
def evaluate_run(
    model: VAE,
    images: torch.Tensor,
    *,
    iwae_k: int,
    batch_size: int,
    chunk: int,
    seed: int,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> dict:
    """The numbers of eval.json for `images` (uint8, or binarized already): ELBO terms, IWAE bound, active units."""
    from tqdm import tqdm

    device = next(model.parameters()).device
    model.eval()
    num_pixels = math.prod(images.shape[1:])
    terms = dataset_loss_terms(
        model, images, kl_weight=1.0, gen_loss="bce", reduction="sum", batch_size=batch_size, seed=seed
    )
    generator = torch.Generator().manual_seed(seed + 1)
    log_likelihoods, mus, log_vars = [], [], []
    for batch in tqdm(images.split(batch_size), desc=f"IWAE k={iwae_k}", disable=not progress or None, leave=False):
        x = to_model_input(batch).to(device)
        log_likelihoods.append(
            iwae_log_likelihood(
                model, x, num_samples=iwae_k, chunk=chunk, generator=generator, autocast_dtype=autocast_dtype
            ).cpu()
        )
        mu, log_var = model.encode(x)
        mus.append(mu.float().cpu())
        log_vars.append(log_var.float().cpu())
    mu, log_var = torch.cat(mus), torch.cat(log_vars)
    kl_per_dim = (0.5 * (mu.pow(2) + log_var.exp() - log_var - 1.0)).mean(0)
    return {
        "neg_elbo_nats": terms["neg_elbo_nats"],
        "neg_elbo_bits_per_dim": terms["neg_elbo_nats"] / (num_pixels * math.log(2.0)),
        "gen_nats": terms["rec_nats"],
        "kl_nats": terms["kl_nats"],
        "iwae_nll_nats": float(-torch.cat(log_likelihoods).double().mean()),
        "iwae_k": iwae_k,
        "active_units": active_units(mu),
        "kl_per_dim": kl_per_dim.tolist(),
        "mean_sigma": float(torch.exp(0.5 * log_var).mean()),
        "num_images": int(images.shape[0]),
    }


@dataclass
class EvaluateArgs:
    """python -m vae.evaluate run=<run dir> [split=test|val] [iwae_k=1000] [batch_size=100] [max_images=0] [precision=auto|fp32|bf16] [data_root=<dir>]"""

    run: str = MISSING
    split: str = "test"
    iwae_k: int = 1000
    batch_size: int = 100  # images per batch; each decodes min(iwae_k, chunk) samples at a time
    chunk: int = 0  # samples decoded at once per image; 0 = about 512 decodes per call (cache-sized)
    max_images: int = 0  # 0 = the whole split
    checkpoint: str = "best"
    seed: int = 0
    precision: str = "auto"  # auto: bf16 where the device has it (measured within 0.01 nats of fp32), else fp32
    device: str = "auto"
    data_root: str | None = None


def main(argv=None) -> dict:
    import json
    from pathlib import Path

    from torch.utils.tensorboard import SummaryWriter

    from vae.cli import check, load_run_or_exit, parse_args
    from vae.runtime import tune_glibc_malloc

    tune_glibc_malloc()
    args = parse_args(EvaluateArgs, argv, usage=EvaluateArgs.__doc__)
    check(args.split in ("test", "val"), "split", "test or val", args.split)
    check(args.iwae_k >= 1, "iwae_k", "an integer >= 1", args.iwae_k)
    check(args.batch_size >= 1, "batch_size", "an integer >= 1", args.batch_size)
    check(args.chunk >= 0, "chunk", "an integer >= 0 (0 = auto)", args.chunk)
    check(args.precision in ("auto", "fp32", "bf16"), "precision", "auto, fp32 or bf16", args.precision)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    loaded, splits = load_run_or_exit(args.run, checkpoint=args.checkpoint, device=device, data_root=args.data_root)
    config = loaded.checkpoint["config"]
    precision = args.precision
    if precision == "auto":
        from vae.runtime import cpu_supports_bf16

        precision = (
            "bf16" if (torch.cuda.is_bf16_supported() if device.startswith("cuda") else cpu_supports_bf16()) else "fp32"
        )
    loaded.model.to(memory_format=torch.channels_last)  # faster decoder convs on CPU and GPU alike
    images = getattr(splits, args.split).images
    if args.max_images:
        images = images[: args.max_images]
    results = evaluate_run(
        loaded.model,
        images,
        iwae_k=args.iwae_k,
        batch_size=args.batch_size,
        chunk=args.chunk or max(1, DECODES_PER_CALL.get(torch.device(device).type, 512) // args.batch_size),
        seed=args.seed,
        autocast_dtype=torch.bfloat16 if precision == "bf16" else None,
    )
    binarize = config["data"]["binarize"]
    results.update(
        binarize=binarize,
        split=args.split,
        data=config["data"]["name"],
        epoch=int(loaded.checkpoint["epoch"]),
        checkpoint=args.checkpoint,
        precision=precision,
        likelihood=(
            "Bernoulli likelihood of binarized images"
            if binarize != "none"
            else "bound under BCE on gray levels, not a likelihood; compare with the literature only when binarized"
        ),
    )
    run_dir = Path(args.run)
    (run_dir / "eval.json").write_text(json.dumps(results, indent=2))
    writer = SummaryWriter(log_dir=str(run_dir))
    for name in ("neg_elbo_nats", "neg_elbo_bits_per_dim", "iwae_nll_nats", "active_units", "mean_sigma"):
        writer.add_scalar(f"eval/{args.split}/{name}", results[name], results["epoch"])
    writer.add_scalar(f"hparams/{args.split}_neg_elbo_nats", results["neg_elbo_nats"], results["epoch"])
    writer.add_scalar(f"hparams/{args.split}_iwae_nll_nats", results["iwae_nll_nats"], results["epoch"])
    writer.close()
    print(
        f"{args.split} ({results['num_images']} images, binarize={binarize}): -ELBO {results['neg_elbo_nats']:.2f} nats "
        f"({results['neg_elbo_bits_per_dim']:.4f} bits/dim), IWAE k={args.iwae_k} NLL bound {results['iwae_nll_nats']:.2f} nats, "
        f"active units {results['active_units']}/{len(results['kl_per_dim'])}; wrote {run_dir / 'eval.json'}"
    )
    return results


if __name__ == "__main__":
    main()

"""`python -m vae.evaluate run=<run dir>`: the negative ELBO, the importance-weighted bound and active units of a run, in eval.json."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vae.bounds import DECODES_PER_CALL, active_units, iwae_log_likelihood
from vae.cli import MISSING
from vae.data import to_model_input
from vae.model import VAE
from vae.step import dataset_loss_terms


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

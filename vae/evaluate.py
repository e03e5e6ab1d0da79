"""Evaluation: the loss terms and the negative ELBO in nats over a whole split."""

from __future__ import annotations

import contextlib

import torch

from vae.data import to_model_input
from vae.losses import vae_loss
from vae.model import VAE

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
    """Per-image averages of every loss term over `images` (uint8 or [0, 1] floats), z drawn with a fixed seed."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    totals = torch.zeros(len(TERM_NAMES), dtype=torch.float64)
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
    model.train(was_training)
    return {name: float(value) for name, value in zip(TERM_NAMES, totals / images.shape[0])}


@torch.no_grad()
def mean_sigma(model: VAE, images: torch.Tensor, *, batch_size: int = 1000) -> float:
    """The encoder's sigma = exp(0.5 log_var), averaged over images and latent dims."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in images.split(batch_size):
        _, log_var = model.encode(to_model_input(batch).to(device))
        total += float(torch.exp(0.5 * log_var.float()).sum())
        count += log_var.numel()
    return total / count

"""Generation loss, KL, the weighted total, and the negative ELBO in nats.

Two reductions (docs/design.md, "Loss conventions"):
- `mean` (the lecture's): BCE averaged over pixels, KL averaged over latent dims, both
  averaged over the batch. kl_weight=1e-3 then means what the lecture means.
- `sum`: both summed per image, averaged over the batch. kl_weight=1 is the true ELBO.
In per-image sums, `mean` is a beta-VAE with beta = kl_weight * D / latent_dim, where D is
the number of pixel values per image (784 for MNIST).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

GEN_LOSSES = ("bce", "l2")
REDUCTIONS = ("mean", "sum")


class LossTerms(NamedTuple):
    """Batch means. `loss`, `gen_loss`, `kl` are in the training reduction; `*_nats` per image."""

    loss: torch.Tensor
    gen_loss: torch.Tensor
    kl: torch.Tensor
    neg_elbo_nats: torch.Tensor
    rec_nats: torch.Tensor
    kl_nats: torch.Tensor


def kl_divergence(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per latent dim, in closed form: (B, L).

    0.5 * (mu^2 + sigma^2 - log sigma^2 - 1); Kingma & Welling 2014, appendix B.
    """
    return 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1.0)


def gen_loss_per_pixel(logits: torch.Tensor, x: torch.Tensor, *, gen_loss: str) -> torch.Tensor:
    """Per-pixel generation loss, same shape as x: BCE with logits, or squared error of sigmoid(logits)."""
    if gen_loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    if gen_loss == "l2":
        return (torch.sigmoid(logits) - x).pow(2)
    raise ValueError(f"gen_loss must be one of {GEN_LOSSES} (got {gen_loss!r})")


def vae_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    *,
    kl_weight: float,
    gen_loss: str,
    reduction: str,
    kl_floor: float = 0.0,
) -> LossTerms:
    """The training objective gen + kl_weight * KL, and the negative ELBO (beta 1, BCE, sums) beside it.

    `kl_floor` (free bits, nats per latent dim) floors each dim's batch-mean KL inside the
    objective only; the reported `kl` and `kl_nats` stay the true values.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS} (got {reduction!r})")
    logits, mu, log_var = logits.float(), mu.float(), log_var.float()
    per_pixel = gen_loss_per_pixel(logits, x, gen_loss=gen_loss).flatten(1)  # (B, D)
    kl_per_dim = kl_divergence(mu, log_var)  # (B, L)
    if gen_loss == "bce":
        bce_per_pixel = per_pixel
    else:
        bce_per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1)

    kl_objective = kl_per_dim
    if kl_floor > 0:
        # Free bits (Kingma et al. 2016): a dim whose batch-mean KL is under the floor costs the
        # floor, so the objective stops pushing it towards the prior.
        kl_objective = kl_per_dim.mean(0).clamp(min=kl_floor).expand_as(kl_per_dim)

    if reduction == "mean":
        gen = per_pixel.mean()
        kl = kl_per_dim.mean()
        kl_term = kl_objective.mean()
    else:
        gen = per_pixel.sum(1).mean()
        kl = kl_per_dim.sum(1).mean()
        kl_term = kl_objective.sum(1).mean()
    rec_nats = bce_per_pixel.sum(1).mean()
    kl_nats = kl_per_dim.sum(1).mean()
    return LossTerms(
        loss=gen + kl_weight * kl_term,
        gen_loss=gen,
        kl=kl,
        neg_elbo_nats=rec_nats + kl_nats,
        rec_nats=rec_nats,
        kl_nats=kl_nats,
    )


def kl_warmup_factor(step: int, *, warmup_steps: int) -> float:
    """The share of kl_weight applied at a training step: rises linearly from 0 to 1 over `warmup_steps`."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, step / warmup_steps)


def beta_effective(*, kl_weight: float, reduction: str, num_pixels: int, latent_dim: int) -> float:
    """The KL weight that the objective amounts to when both terms are summed per image."""
    if reduction == "mean":
        return kl_weight * num_pixels / latent_dim
    if reduction == "sum":
        return kl_weight
    raise ValueError(f"reduction must be one of {REDUCTIONS} (got {reduction!r})")


def nats_to_bits_per_dim(nats: float, num_pixels: int) -> float:
    """Convert nats per image to bits per pixel value."""
    return nats / (num_pixels * math.log(2.0))

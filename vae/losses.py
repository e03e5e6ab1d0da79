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


OBJECTIVES = ("elbo", "iwae")
ESTIMATORS = ("iwae", "dreg")
LOG_2PI = math.log(2 * math.pi)


class Objective(NamedTuple):
    """What training maximises: `elbo` (vae_loss) or `iwae` with k samples and a gradient estimator."""

    name: str = "elbo"
    k: int = 1
    estimator: str = "iwae"

    @classmethod
    def from_config(cls, objective: dict | None) -> Objective:
        """From the config's objective group (absent in runs saved before it existed: the ELBO)."""
        objective = objective or {"name": "elbo"}
        if objective["name"] not in OBJECTIVES:
            raise ValueError(f"objective.name must be one of {OBJECTIVES} (got {objective['name']!r})")
        if objective["name"] == "elbo":
            return cls()
        return cls("iwae", objective["k"], objective["estimator"])


def log_weights(
    logits: torch.Tensor,
    x: torch.Tensor,
    z: torch.Tensor,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    *,
    stop_posterior_gradient: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log w = log p(x|z) + log p(z) - log q(z|x) for K samples per image, and log p(x|z): each (K, B), fp32.

    logits (K, B, C, H, W), x (B, C, H, W), z (K, B, L), mu and log_var (B, L). With
    `stop_posterior_gradient`, q's parameters are held constant in log q (z still carries their
    gradient): the doubly reparameterized estimator's form.
    """
    logits = logits.float()
    log_px_z = (
        -F.binary_cross_entropy_with_logits(logits, x.float().unsqueeze(0).expand_as(logits), reduction="none")
        .flatten(2)
        .sum(-1)
    )
    z, mu, log_var = z.float(), mu.float(), log_var.float()
    if stop_posterior_gradient:
        mu, log_var = mu.detach(), log_var.detach()
    log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
    log_qz_x = -0.5 * ((z - mu).pow(2) * torch.exp(-log_var) + log_var + LOG_2PI).sum(-1)
    return log_px_z + log_pz - log_qz_x, log_px_z


def iwae_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    z: torch.Tensor,
    mu: torch.Tensor,
    log_var: torch.Tensor,
    *,
    estimator: str = "iwae",
) -> LossTerms:
    """The negative importance-weighted bound -log (1/K) sum_k w_k, averaged over the batch (Burda et al. 2015).

    `loss` is the bound in nats per image; `gen_loss`/`rec_nats` the mean -log p(x|z) over the K
    samples, `kl`/`kl_nats` the closed-form KL, `neg_elbo_nats` their sum (the single-sample
    -ELBO, beside the bound). With `estimator="dreg"` the value is the same and the gradient is
    Tucker et al.'s (2018) doubly reparameterized one: the decoder gets sum_k w~_k d log w_k, the
    encoder sum_k w~_k^2 (d log w_k / d z_k)(d z_k / d phi), with w~ the normalised weights.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"objective.estimator must be one of {ESTIMATORS} (got {estimator!r})")
    dreg = estimator == "dreg" and z.requires_grad
    log_w, log_px_z = log_weights(logits, x, z, mu, log_var, stop_posterior_gradient=dreg)
    num_samples = log_w.shape[0]
    loss = -(torch.logsumexp(log_w, 0) - math.log(num_samples)).mean()
    if dreg:
        weights = torch.softmax(log_w.detach(), 0)  # (K, B)
        # The gradient reaching z_k is scaled by w~_k once more: the encoder's w~^2 (the decoder keeps w~).
        z.register_hook(lambda grad: grad * weights.unsqueeze(-1).to(grad.dtype))
        surrogate = -(weights * log_w).sum(0).mean()
        loss = loss.detach() + (surrogate - surrogate.detach())
    kl_nats = kl_divergence(mu.float(), log_var.float()).sum(1).mean()
    rec_nats = -log_px_z.mean()
    return LossTerms(
        loss=loss, gen_loss=rec_nats, kl=kl_nats, neg_elbo_nats=rec_nats + kl_nats, rec_nats=rec_nats, kl_nats=kl_nats
    )


def objective_loss(
    output,
    x: torch.Tensor,
    *,
    objective: Objective,
    kl_weight: float,
    gen_loss: str,
    reduction: str,
    kl_floor: float = 0.0,
) -> LossTerms:
    """The loss terms of `objective` for a model output (`VAEOutput`): vae_loss, or iwae_loss for K samples."""
    if objective.name == "iwae":
        return iwae_loss(output.logits, x, output.z, output.mu, output.log_var, estimator=objective.estimator)
    return vae_loss(
        output.logits,
        x,
        output.mu,
        output.log_var,
        kl_weight=kl_weight,
        gen_loss=gen_loss,
        reduction=reduction,
        kl_floor=kl_floor,
    )

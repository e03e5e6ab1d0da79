"""Generation loss, KL, the weighted total (the ELBO's terms), the importance-weighted bound, the negative ELBO in nats.

The functions take a model's output as its logits and its stochastic layers (`vae.distributions.LatentLayer`):
the KL and the log-weights sum over the layers. `vae.objectives` builds the objective the config names
and calls them.

Two reductions (docs/design.md, "Loss conventions"):
- `mean` (the lecture's): BCE averaged over pixels, KL averaged over latent dims, both
  averaged over the batch. kl_weight=1e-3 then means what the lecture means.
- `sum`: both summed per image, averaged over the batch. kl_weight=1 is the true ELBO.
In per-image sums, `mean` is a beta-VAE with beta = kl_weight * D / latent_dim, where D is
the number of pixel values per image (784 for MNIST).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from vae.distributions import LatentLayer
from vae.likelihoods import LIKELIHOODS

REDUCTIONS = ("mean", "sum")
ESTIMATORS = ("iwae", "dreg")  # the IWAE bound's gradient: its plain one, or Tucker et al.'s doubly reparameterized


# The terms every objective reports, in order: what the trainer sums over an epoch and the validation pass averages.
TERM_NAMES = ("loss", "gen_loss", "kl", "neg_elbo_nats", "rec_nats", "kl_nats")


def layer_term_names(num_layers: int) -> tuple[str, ...]:
    """The per-layer KL terms of a model with several stochastic layers (kl_nats_z1 next to x, ...); none for one."""
    return tuple(f"kl_nats_z{i}" for i in range(1, num_layers + 1)) if num_layers > 1 else ()


def term_names(num_layers: int = 1) -> tuple[str, ...]:
    """TERM_NAMES, then the KL of each layer when there is more than one."""
    return TERM_NAMES + layer_term_names(num_layers)


class LossTerms(NamedTuple):
    """Batch means. `loss`, `gen_loss`, `kl` are in the training reduction; `*_nats` per image.

    `layer_kl_nats`: the KL of each stochastic layer in nats per image (from x up), only when there
    are several (`kl_nats` is their sum). `extras`: an objective's own named terms, (name, batch mean)
    pairs, in the order of its `extra_names` (vae.objectives): they reach the epoch's sums, metrics.json,
    TensorBoard (`train/<name>`, `val/<name>`) and the sweep report with nothing else edited.
    """

    loss: torch.Tensor
    gen_loss: torch.Tensor
    kl: torch.Tensor
    neg_elbo_nats: torch.Tensor
    rec_nats: torch.Tensor
    kl_nats: torch.Tensor
    layer_kl_nats: tuple[torch.Tensor, ...] = ()
    extras: tuple[tuple[str, torch.Tensor], ...] = ()

    def scalars(self) -> tuple[torch.Tensor, ...]:
        """Every term, in the order of `names()`."""
        return (*self[: len(TERM_NAMES)], *self.layer_kl_nats, *(value for _, value in self.extras))

    def names(self) -> tuple[str, ...]:
        return TERM_NAMES + layer_term_names(len(self.layer_kl_nats)) + tuple(name for name, _ in self.extras)


@functools.cache
def default_likelihood(gen_loss: str = "bce"):
    """The likelihood `gen_loss` names, for a loss computed without a model's (one with no state of its own:
    a Gaussian's sigma lives in the model, so gen_loss=gaussian needs the model's, `likelihood_of(model)`).
    Built once per name: such a likelihood has nothing to change."""
    likelihood = LIKELIHOODS.get(gen_loss)({})
    if any(True for _ in likelihood.parameters()) or any(True for _ in likelihood.buffers()):
        raise ValueError(f"gen_loss={gen_loss} needs the model's likelihood (vae.likelihoods.likelihood_of(model))")
    return likelihood


def _layer_kls(layers: Sequence[LatentLayer]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """The KL per latent dim of every layer side by side, (..., sum of dims), in fp32; and each layer's KL
    in nats per image when there are several."""
    kls = [layer.float().kl() for layer in layers]
    if len(kls) == 1:
        return kls[0], ()
    return torch.cat(kls, -1), tuple(kl.sum(-1).mean() for kl in kls)


def elbo_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    layers: Sequence[LatentLayer],
    *,
    kl_weight: float,
    reduction: str,
    free_bits: float = 0.0,
    likelihood=None,
    gen_loss: str = "bce",
) -> LossTerms:
    """The training objective gen + kl_weight * KL, and the negative ELBO (beta 1, sums) beside it.

    Both terms come from `likelihood` (vae.likelihoods; None: the one `gen_loss` names, without state):
    the training loss per pixel value and log p(x|z), which are the same but for gen_loss=l2 (trained
    on the squared error, reported with the Bernoulli bound).

    KL sums the layers' (`LatentLayer.kl`: closed form against N(0, I), else at the layer's z); with
    `reduction=mean` it is averaged over every layer's latent dims. `free_bits` (nats per latent dim)
    floors each dim's batch-mean KL inside the objective only; the reported `kl` and `kl_nats` stay
    the true values.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS} (got {reduction!r})")
    likelihood = default_likelihood(gen_loss) if likelihood is None else likelihood
    loss_per_pixel, log_px_z = likelihood.terms(logits.float(), x)
    per_pixel, rec_per_pixel = loss_per_pixel.flatten(1), -log_px_z.flatten(1)  # (B, D)
    kl_per_dim, layer_kl_nats = _layer_kls(layers)  # (B, L)

    kl_objective = kl_per_dim
    if free_bits > 0:
        # Free bits (Kingma et al. 2016): a dim whose batch-mean KL is under the floor costs the
        # floor, so the objective stops pushing it towards the prior.
        kl_objective = kl_per_dim.mean(0).clamp(min=free_bits).expand_as(kl_per_dim)

    if reduction == "mean":
        gen = per_pixel.mean()
        kl = kl_per_dim.mean()
        kl_term = kl_objective.mean()
    else:
        gen = per_pixel.sum(1).mean()
        kl = kl_per_dim.sum(1).mean()
        kl_term = kl_objective.sum(1).mean()
    rec_nats = rec_per_pixel.sum(1).mean()
    kl_nats = kl_per_dim.sum(1).mean()
    return LossTerms(
        loss=gen + kl_weight * kl_term,
        gen_loss=gen,
        kl=kl,
        neg_elbo_nats=rec_nats + kl_nats,
        rec_nats=rec_nats,
        kl_nats=kl_nats,
        layer_kl_nats=layer_kl_nats,
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


def log_weights(
    logits: torch.Tensor,
    x: torch.Tensor,
    layers: Sequence[LatentLayer],
    *,
    stop_posterior_gradient: bool = False,
    likelihood=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log w = log p(x|z) + sum over layers of log p(z_l) - log q(z_l) for K samples per image, and log p(x|z): each (K, B), fp32.

    logits (K, B, C, H, W), x (B, C, H, W), each layer's z (K, B, L_l) (its distributions' parameters
    broadcast to it). With `stop_posterior_gradient`, q's parameters are held constant in log q (z still
    carries their gradient): the doubly reparameterized estimator's form. log p(x|z) is `likelihood`'s
    (vae.likelihoods; None: Bernoulli).
    """
    likelihood = default_likelihood() if likelihood is None else likelihood
    log_px_z = likelihood.log_prob(logits.float(), x.float().unsqueeze(0)).flatten(2).sum(-1)
    log_w = log_px_z
    for layer in layers:
        posterior, prior, z = layer.float()
        if stop_posterior_gradient:
            posterior = posterior.detach()
        log_w = log_w + prior.log_prob(z) - posterior.log_prob(z)
    return log_w, log_px_z


def with_sample_axis(logits: torch.Tensor, x: torch.Tensor, layers: Sequence[LatentLayer]):
    """A one-sample output (logits of x's shape, z (B, L)) as one of K = 1 samples; a K-sample one as it is."""
    if logits.dim() > x.dim():
        return logits, tuple(layers)
    return logits.unsqueeze(0), tuple(
        LatentLayer(layer.posterior, layer.prior, layer.z.unsqueeze(0)) for layer in layers
    )


def iwae_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    layers: Sequence[LatentLayer],
    *,
    estimator: str = "iwae",
    likelihood=None,
) -> LossTerms:
    """The negative importance-weighted bound -log (1/K) sum_k w_k, averaged over the batch (Burda et al. 2015).

    `loss` is the bound in nats per image; `gen_loss`/`rec_nats` the mean -log p(x|z) over the K
    samples, `kl`/`kl_nats` the layers' KL (closed form against N(0, I), else the mean over the K
    samples of log q - log p), `neg_elbo_nats` their sum (the single-sample -ELBO, beside the bound).
    With `estimator="dreg"` the value is the same and the gradient is Tucker et al.'s (2018) doubly
    reparameterized one: the decoder gets sum_k w~_k d log w_k, the encoder sum_k w~_k^2
    (d log w_k / d z_k)(d z_k / d phi), with w~ the normalised weights (one stochastic layer only:
    with several, z_l depends on z_(l-1) and the hook below would weight some paths twice).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"objective.estimator must be one of {ESTIMATORS} (got {estimator!r})")
    logits, layers = with_sample_axis(logits, x, layers)
    dreg = estimator == "dreg" and any(layer.z.requires_grad for layer in layers)
    if dreg and len(layers) > 1:
        raise ValueError(
            f"objective.estimator=dreg is implemented for one stochastic layer (this model has {len(layers)})"
        )
    log_w, log_px_z = log_weights(logits, x, layers, stop_posterior_gradient=dreg, likelihood=likelihood)
    num_samples = log_w.shape[0]
    loss = -(torch.logsumexp(log_w, 0) - math.log(num_samples)).mean()
    if dreg:
        weights = torch.softmax(log_w.detach(), 0)  # (K, B)
        # The gradient reaching z_k is scaled by w~_k once more: the encoder's w~^2 (the decoder keeps w~).
        layers[0].z.register_hook(lambda grad: grad * weights.unsqueeze(-1).to(grad.dtype))
        surrogate = -(weights * log_w).sum(0).mean()
        loss = loss.detach() + (surrogate - surrogate.detach())
    kls = [layer.float().kl().sum(-1).mean() for layer in layers]
    kl_nats = kls[0]
    for kl in kls[1:]:
        kl_nats = kl_nats + kl
    rec_nats = -log_px_z.mean()
    return LossTerms(
        loss=loss,
        gen_loss=rec_nats,
        kl=kl_nats,
        neg_elbo_nats=rec_nats + kl_nats,
        rec_nats=rec_nats,
        kl_nats=kl_nats,
        layer_kl_nats=tuple(kls) if len(kls) > 1 else (),
    )

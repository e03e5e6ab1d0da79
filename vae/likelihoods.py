"""The decoder's likelihood p(x|z): Bernoulli, or a calibrated Gaussian (the sigma-VAE of Rybkin et al. 2021).

A model's decoder returns logits; the likelihood says what they mean. Every model carries one as
`model.likelihood` (`vae.build.build_model` attaches it from the config's `gen_loss` and
`decoder_sigma`; `likelihood_of(model)` is Bernoulli for a model built without one), and the ELBO, the
importance weights and the evaluation take their log p(x|z) from it, so the -ELBO in nats is the
bound of the model that was trained.

- `Bernoulli`: log p(x|z) = -BCE(logits, x): the likelihood of binary images (`gen_loss=bce`, and
  `gen_loss=l2`, whose squared error is not a normalised density: its runs report the Bernoulli bound).
- `Gaussian` (`gen_loss=gaussian`): x ~ N(sigmoid(logits), sigma^2) per pixel value, one sigma for
  every pixel. `decoder_sigma=learned`: sigma is a parameter trained with the model (initialised at
  1); `optimal`: sigma is the batch's root mean squared error (its maximum-likelihood value given
  the means), and a running average of it (momentum 0.9, as BatchNorm's statistics) is what
  validation and evaluation use; a number: sigma fixed. A learned log sigma is soft-clipped at -6
  (-6 + softplus(log_sigma + 6), as in the sigma-VAE), an optimal one floored there.
  The loss is the whole negative log density (the log sigma and log 2 pi terms included).

Protocol for 8-bit images under the Gaussian: uniform dequantization (Theis et al. 2016). The
model sees y = (x + u) / 256, x in {0..255}, u ~ U[0, 1): drawn afresh every training step, and
drawn once per image from a fixed seed for validation and evaluation (`dequantize`), so that the
density on [0, 1] is a density of dequantized data and log P(x) >= E_u log p(y) - D log 256.
Bits per dimension are therefore (-ELBO + D ln 256) / (D ln 2) (`bits_per_dim_8bit`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vae.registry import Registry

DECODER_SIGMAS = ("learned", "optimal")  # or a positive number: a fixed sigma
MIN_LOG_SIGMA = -6.0  # the sigma-VAE's soft floor on log sigma
OPTIMAL_SIGMA_MOMENTUM = 0.9
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def softclip_min(value: torch.Tensor, minimum: float) -> torch.Tensor:
    """A smooth max(value, minimum): minimum + softplus(value - minimum)."""
    return minimum + F.softplus(value - minimum)


class Bernoulli(nn.Module):
    """Binary pixels: log p(x|z) = -BCE(logits, x), per pixel value."""

    name = "bernoulli"
    dequantize = False

    def param_channels(self, image_channels: int) -> int:
        """The decoder's output channels this likelihood reads: one logit per pixel value."""
        return image_channels

    def log_prob(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per pixel value, fp32; x broadcasts against logits (a sample axis in front)."""
        logits = logits.float()
        return -F.binary_cross_entropy_with_logits(logits, x.float().expand_as(logits), reduction="none")

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def sigma(self) -> float | None:
        return None


class Gaussian(nn.Module):
    """x ~ N(sigmoid(logits), sigma^2) per pixel value; sigma learned, optimal or fixed (the module docstring)."""

    name = "gaussian"
    dequantize = True

    def param_channels(self, image_channels: int) -> int:
        """One mean (before its sigmoid) per pixel value; sigma is the likelihood's own."""
        return image_channels

    def __init__(self, sigma: str | float):
        super().__init__()
        self.mode = sigma if isinstance(sigma, str) else "fixed"
        if self.mode == "learned":
            self.log_sigma = nn.Parameter(torch.zeros(()))
        elif self.mode == "optimal":
            self.register_buffer("running_var", torch.ones(()))
        elif self.mode == "fixed":
            if not float(sigma) > 0:
                raise ValueError(f"decoder_sigma must be learned, optimal or a number > 0 (got {sigma!r})")
            self.register_buffer("fixed_log_sigma", torch.tensor(math.log(float(sigma))))
        else:
            raise ValueError(f"decoder_sigma must be learned, optimal or a number > 0 (got {sigma!r})")

    def _log_sigma(self, mean: torch.Tensor | None = None, x: torch.Tensor | None = None) -> torch.Tensor:
        """log sigma as the density uses it: learned soft-clipped (a smooth reparameterization), optimal floored."""
        if self.mode == "learned":
            return softclip_min(self.log_sigma.float(), MIN_LOG_SIGMA)
        if self.mode == "fixed":
            return self.fixed_log_sigma
        if self.training and mean is not None:
            # The batch's maximum-likelihood sigma given the means; its running average serves evaluation.
            var = (x.float() - mean).pow(2).mean()
            with torch.no_grad():
                self.running_var.lerp_(var.detach(), 1 - OPTIMAL_SIGMA_MOMENTUM)
        else:
            var = self.running_var
        return (0.5 * torch.log(var)).clamp(min=MIN_LOG_SIGMA)

    def log_prob(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log N(x; sigmoid(logits), sigma^2) per pixel value, fp32; x broadcasts against logits."""
        mean = torch.sigmoid(logits.float())
        log_sigma = self._log_sigma(mean, x)
        return -0.5 * ((x.float() - mean) * torch.exp(-log_sigma)).pow(2) - log_sigma - HALF_LOG_TWO_PI

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def sigma(self) -> float:
        """The sigma validation and evaluation use (for `optimal`, the running average)."""
        with torch.no_grad():
            return float(torch.exp(self._log_sigma()))


BERNOULLI = Bernoulli()


# gen_loss -> builder(run config) -> the model's likelihood. The key stays `gen_loss=` (bce | l2 | gaussian, as
# typed since the first run); vae.config takes its choices from here.
LIKELIHOODS = Registry("gen_loss")


@LIKELIHOODS.register("bce")
def _bce(config: Mapping[str, Any]) -> nn.Module:
    return Bernoulli()


@LIKELIHOODS.register("l2")
def _l2(config: Mapping[str, Any]) -> nn.Module:
    # Trained on the squared error of sigmoid(logits) (vae.losses), which is no normalised density: its
    # runs report the Bernoulli bound.
    return Bernoulli()


@LIKELIHOODS.register("gaussian")
def _gaussian(config: Mapping[str, Any]) -> nn.Module:
    return Gaussian(config.get("decoder_sigma", "learned"))


def build_likelihood(config: Mapping[str, Any]) -> nn.Module:
    """The run config's likelihood, by its gen_loss (LIKELIHOODS; a config saved without one is bce's)."""
    return LIKELIHOODS.get(config.get("gen_loss", "bce"))(config)


def likelihood_of(model: nn.Module) -> nn.Module:
    """The model's likelihood; Bernoulli for a model built without one."""
    return getattr(model, "likelihood", BERNOULLI)


def dequantize(images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images to (x + u) / 256 with u ~ U[0, 1) (a fresh draw; the global RNG when `generator` is None)."""
    noise = torch.rand(images.shape, generator=generator, device=images.device if generator is None else "cpu")
    return (images.float() + noise.to(images.device)) / 256.0


def dequantize_fixed(images: torch.Tensor, first_index: int, *, seed: int) -> torch.Tensor:
    """The fixed dequantization of validation and evaluation: image i's noise comes from seed (seed, i) alone,
    so a number does not depend on the batch size it was computed with."""
    noise = torch.empty(images.shape, dtype=torch.float32)
    generator = torch.Generator()
    for offset in range(images.shape[0]):
        generator.manual_seed(seed * 1_000_003 + first_index + offset)
        noise[offset] = torch.rand(images.shape[1:], generator=generator)
    return (images.float() + noise.to(images.device)) / 256.0


def bits_per_dim_8bit(neg_elbo_nats: float, num_pixels: int) -> float:
    """Bits per dimension of 8-bit data from a -ELBO in nats of its dequantized version on [0, 1]."""
    return (neg_elbo_nats + num_pixels * math.log(256.0)) / (num_pixels * math.log(2.0))

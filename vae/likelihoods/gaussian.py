"""The calibrated Gaussian decoder (`gen_loss=gaussian`): the sigma-VAE of Rybkin et al. (2021).

x ~ N(sigmoid(logits), sigma^2) per pixel value, one sigma for every pixel, on dequantized 8-bit images
(vae.likelihoods.base). `decoder_sigma=learned`: sigma is a parameter trained with the model (initialised
at 1); `optimal`: sigma is the batch's root mean squared error (its maximum-likelihood value given the
means), and a running average of it (momentum 0.9, as BatchNorm's statistics) is what validation and
evaluation use; a number: sigma fixed. A learned log sigma is soft-clipped at -6
(-6 + softplus(log_sigma + 6), as in the sigma-VAE), an optimal one floored there. The loss is the whole
negative log density (the log sigma and log 2 pi terms included).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vae.likelihoods.base import LIKELIHOODS, Likelihood
from vae.schema import LikelihoodConfig

DECODER_SIGMAS = ("learned", "optimal")  # or a positive number: a fixed sigma
MIN_LOG_SIGMA = -6.0  # the sigma-VAE's soft floor on log sigma
OPTIMAL_SIGMA_MOMENTUM = 0.9
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def softclip_min(value: torch.Tensor, minimum: float) -> torch.Tensor:
    """A smooth max(value, minimum): minimum + softplus(value - minimum)."""
    return minimum + F.softplus(value - minimum)


class Gaussian(Likelihood):
    """x ~ N(sigmoid(logits), sigma^2) per pixel value; sigma learned, optimal or fixed (the module docstring)."""

    name = "gaussian"
    dequantize = True
    note = (
        "Gaussian density of uniformly dequantized 8-bit images, (x + u) / 256 on [0, 1] (vae.likelihoods); "
        "bits/dim = (nats + D ln 256) / (D ln 2), an upper bound on the discrete NLL"
    )

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

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean = torch.sigmoid(logits.float())
        noise = torch.randn(mean.shape, generator=generator, device="cpu" if generator else mean.device)
        return (mean + float(self.sigma()) * noise.to(mean.device)).clamp(0, 1)

    def sigma(self) -> float:
        """The sigma validation and evaluation use (for `optimal`, the running average)."""
        with torch.no_grad():
            return float(torch.exp(self._log_sigma()))


@LIKELIHOODS.register("gaussian", schema=LikelihoodConfig)
def _gaussian(config: Mapping[str, Any]) -> Likelihood:
    return Gaussian(config.get("decoder_sigma", "learned"))

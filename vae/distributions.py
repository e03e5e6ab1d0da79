"""The distributions of a latent layer: the diagonal Gaussian posterior, the standard normal prior, a layer.

One place for what every objective, bound and tool computes from them: the clamp of log_var, the
reparameterized sample, log densities and the closed-form KL. Shapes: parameters (B, L) or (K, B, L)
(K samples per image, where a layer's parameters depend on the layer below); log densities are
summed over the last dim, `log_density` keeps it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

# log_var is clamped to this range before exp(): sigma from about 3e-7 to 2e4. Outside it
# exp() over- or underflows in bf16/fp32 and one bad batch turns the run into NaN.
LOG_VAR_MIN, LOG_VAR_MAX = -30.0, 20.0
LOG_2PI = math.log(2 * math.pi)


class DiagonalGaussian:
    """N(mean, diag(exp(log_var))), log_var clamped to [LOG_VAR_MIN, LOG_VAR_MAX] (once, here).

    An encoder returns one (q(z|x)); so does a conditional prior such as p(z1|z2). Like diffusers'
    `DiagonalGaussianDistribution`: the parameters as tensors, `rsample`, `log_prob`, `kl`, `mode`.
    """

    def __init__(self, mean: torch.Tensor, log_var: torch.Tensor):
        self.mean = mean
        self.log_var = log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)

    @classmethod
    def _clamped(cls, mean: torch.Tensor, log_var: torch.Tensor) -> DiagonalGaussian:
        """From a log_var that is clamped already (a copy or a cast of one): no second clamp."""
        posterior = cls.__new__(cls)
        posterior.mean, posterior.log_var = mean, log_var
        return posterior

    @property
    def std(self) -> torch.Tensor:
        """sigma = exp(0.5 log_var) (the book's slip drops the 0.5)."""
        return torch.exp(0.5 * self.log_var)

    @property
    def mode(self) -> torch.Tensor:
        return self.mean

    @property
    def dim(self) -> int:
        return self.mean.shape[-1]

    def float(self) -> DiagonalGaussian:
        """The same distribution with fp32 parameters (losses are computed in fp32 under autocast)."""
        return DiagonalGaussian._clamped(self.mean.float(), self.log_var.float())

    def detach(self) -> DiagonalGaussian:
        """The same distribution with its parameters cut from the graph (DReG's log q)."""
        return DiagonalGaussian._clamped(self.mean.detach(), self.log_var.detach())

    def rsample(self, eps: torch.Tensor | None = None) -> torch.Tensor:
        """The reparameterized sample z = mean + exp(0.5 log_var) * eps, eps ~ N(0, I) drawn here when None.

        eps (B, L) gives one z per image, eps (K, B, L) K per image: gradients reach mean and log_var through z.
        """
        if eps is None:
            eps = torch.randn_like(self.mean)
        return self.mean + self.std * eps

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z_d; mean_d, sigma_d^2) per dim: the terms `log_prob` sums."""
        return -0.5 * ((z - self.mean).pow(2) * torch.exp(-self.log_var) + self.log_var + LOG_2PI)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z), summed over the last dim: (B,) or (K, B)."""
        return self.log_density(z).sum(-1)

    def log_prob_of_noise(self, eps: torch.Tensor) -> torch.Tensor:
        """log q(z) at z = rsample(eps), computed from eps: the same density, with no z - mean to cancel
        where sigma is tiny (the evaluation bound's form; no gradient reaches z through it)."""
        return (-0.5 * (eps.pow(2) + LOG_2PI) - 0.5 * self.log_var).sum(-1)

    def kl(self, prior: StandardNormal | DiagonalGaussian) -> torch.Tensor:
        """KL(q || p) per dim in closed form, against N(0, I) or another diagonal Gaussian (a conditional prior).

        Against N(0, I): 0.5 (mu^2 + sigma^2 - log sigma^2 - 1) (Kingma & Welling 2014, app. B); against
        N(m, s^2): 0.5 ((sigma^2 + (mu - m)^2) / s^2 + log s^2 - log sigma^2 - 1). Against any other prior
        a layer's KL is estimated at its sample (`LatentLayer.kl`).
        """
        if isinstance(prior, StandardNormal):
            return 0.5 * (self.mean.pow(2) + self.log_var.exp() - self.log_var - 1.0)
        if isinstance(prior, DiagonalGaussian):
            variance_ratio = torch.exp(self.log_var - prior.log_var)
            return 0.5 * (
                variance_ratio
                + (self.mean - prior.mean).pow(2) * torch.exp(-prior.log_var)
                - (self.log_var - prior.log_var)
                - 1.0
            )
        raise TypeError(f"the closed-form KL is against StandardNormal or DiagonalGaussian, not {type(prior).__name__}")


class StandardNormal:
    """The prior N(0, I) over `dim` latent dims, the top layer's (and a one-layer VAE's only) prior.

    A learned prior (a mixture, a flow: a module with parameters) would stand in its place, as the
    model's `prior`, with the same `log_prob`, `log_density` and `sample`; its layer's KL is then
    estimated at the layer's sample instead of in closed form.
    """

    kl_estimator = "closed form"  # a layer's KL against it (LatentLayer.kl)

    def __init__(self, dim: int):
        self.dim = dim

    def float(self) -> StandardNormal:
        return self

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z_d; 0, 1) per dim."""
        return -0.5 * (z.pow(2) + LOG_2PI)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), summed over the last dim."""
        return self.log_density(z).sum(-1)

    def sample(
        self, num_samples: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """(num_samples, dim) draws, made on the CPU (the same numbers on every device for a seeded generator)."""
        return torch.randn(num_samples, self.dim, generator=generator, device="cpu").to(device)


class LatentLayer(NamedTuple):
    """One stochastic layer of a model's output: its posterior, its prior and the sample z drawn from the posterior.

    The prior may be conditional on the layer above (a `DiagonalGaussian` computed from its z).
    """

    posterior: DiagonalGaussian
    prior: StandardNormal | DiagonalGaussian
    z: torch.Tensor  # (B, L) or (K, B, L)

    def float(self) -> LatentLayer:
        return LatentLayer(self.posterior.float(), self.prior.float(), self.z.float())

    def kl(self) -> torch.Tensor:
        """KL(q || p) per dim: in closed form against a Gaussian prior (the standard normal, or a conditional
        Gaussian given the layers above: the usual estimator of a hierarchy's ELBO, e.g. NVAE's), else
        log q - log p at z (one sample; a prior with no closed form)."""
        if isinstance(self.prior, (StandardNormal, DiagonalGaussian)):
            return self.posterior.kl(self.prior)
        return self.posterior.log_density(self.z) - self.prior.log_density(self.z)

"""prior=vamp: the VampPrior of Tomczak & Welling (2018), a mixture of the posteriors of K learned pseudo-inputs.

    p(z) = (1/K) sum_k q(z | u_k),

where q is the model's own encoder (its top layer's posterior, `model.encode`) and u_1..u_K are learned
images, `prior.components` of them (conf/prior/vamp.yaml; the paper uses 500 on MNIST), parameterised as
sigmoid(logits) so they stay in the pixel range (the paper clips them with a hardtanh), initialised near
the mid-gray image. The prior is learned with the model: its pseudo-inputs are parameters of the model
(in the optimizer and the checkpoints), and the encoder's weights are shared, not copied (the prior holds
the model's `encode`, not the model). The mixture has no closed-form KL against a Gaussian posterior: a
layer's KL is log q(z|x) - log p(z) at the layer's sample (one sample; metrics.json says `kl_estimator:
one sample`), with log p(z) spread evenly over the dims in `log_density`, as the mixture does not factorise.
Free bits (a floor per dim) therefore cannot mean anything and are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import MISSING
from torch import nn

from vae.priors.base import PRIORS
from vae.schema import Get, PriorConfig, check

LOG_2PI = math.log(2 * math.pi)


class VampPrior(nn.Module):
    """(1/K) sum_k q(z | sigmoid(pseudo_logits_k)) through the model's encoder (the module docstring)."""

    kl_estimator = "one sample"

    def __init__(self, encode, *, components: int, image_shape: tuple[int, int, int], latent_dim: int):
        super().__init__()
        if not (isinstance(components, int) and components >= 1):
            raise ValueError(f"prior.components must be an integer >= 1 (got {components!r})")
        object.__setattr__(self, "_encode", encode)  # the model's encoder, shared: not a submodule of the prior
        self.dim = latent_dim
        self.pseudo_logits = nn.Parameter(0.01 * torch.randn(components, *image_shape))

    def pseudo_inputs(self) -> torch.Tensor:
        """The K learned images, (K, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.pseudo_logits)

    def components(self):
        """The K mixture components' means and log variances, each (K, L), fp32."""
        posterior = self._encode(self.pseudo_inputs())
        return posterior.mean.float(), posterior.log_var.float()

    def float(self) -> VampPrior:
        return self

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = logsumexp_k log N(z; mu_k, var_k) - log K, summed over the last dim; any leading axes."""
        mean, log_var = self.components()
        z = z.float().unsqueeze(-2)  # (..., 1, L) against (K, L)
        per_component = -0.5 * ((z - mean).pow(2) * torch.exp(-log_var) + log_var + LOG_2PI).sum(-1)  # (..., K)
        return torch.logsumexp(per_component, dim=-1) - math.log(mean.shape[0])

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) spread evenly over the dims (the mixture does not factorise): sums to `log_prob`."""
        return (self.log_prob(z) / z.shape[-1]).unsqueeze(-1).expand(z.shape)

    @torch.no_grad()
    def sample(
        self, num_samples: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """(num_samples, L): a component drawn uniformly, then z from it (the draws made on the CPU)."""
        mean, log_var = (t.cpu() for t in self.components())
        pick = torch.randint(mean.shape[0], (num_samples,), generator=generator)
        eps = torch.randn(num_samples, self.dim, generator=generator)
        return (mean[pick] + torch.exp(0.5 * log_var[pick]) * eps).to(device)


@dataclass
class VampPriorConfig(PriorConfig):
    components: int = MISSING  # K pseudo-inputs (conf/prior/vamp.yaml)

    @classmethod
    def check(cls, get: Get) -> None:
        components = get("prior.components")
        check(isinstance(components, int) and components >= 1, "prior.components", "an integer >= 1", components)
        check(get("free_bits") == 0, "free_bits", "0 with prior=vamp (its KL is not per dim)", get("free_bits"))


@PRIORS.register("vamp", schema=VampPriorConfig)
def _vamp(config: Mapping[str, Any], model) -> VampPrior:
    return VampPrior(
        model.encode,
        components=config["prior"]["components"],
        image_shape=tuple(model.image_shape),
        latent_dim=model.latent_dim,
    )

"""The two contracts a forker implements, as `typing.Protocol`s: a model (`VAEModel`) and a likelihood
(`LikelihoodModel`). docs/design.md section 4 says what each member means; tests/test_conformance.py
checks every registered model and likelihood against them (`isinstance` on these runtime-checkable
protocols, then the behaviour: shapes, gradients, a state round trip, the bound at k = 1).

`vae.model.VAE` (one stochastic layer) and `vae.hvae.HierarchicalVAE` implement `VAEModel`;
`vae.likelihoods.base.Likelihood` and its subclasses implement `LikelihoodModel`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class VAEModel(Protocol):
    """encoder -> q(z|x) -> z -> decoder: what the trainer, the objectives, the evaluation and the latent tools call."""

    latent_dim: int  # the top layer's size
    image_shape: tuple[int, ...]  # (C, H, W)
    prior: Any  # the top layer's prior (vae.distributions.StandardNormal)

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """Each stochastic layer's size, from x up."""

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> Any:
        """VAEOutput(logits (the likelihood's parameters), layers); eps (B, sum(latent_dims)) or (K, B, ...)."""

    def encode(self, x: torch.Tensor) -> Any:
        """The top layer's posterior, a DiagonalGaussian (B, latent_dim)."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters for a top-layer z (N, latent_dim): (N, P, H, W)."""

    def sample(
        self, num_samples: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images in [0, 1] from the prior: the likelihood's mean of the decoded z."""


@runtime_checkable
class LikelihoodModel(Protocol):
    """p(x|z) from the decoder's output: what the objectives, the evaluation and the tools call."""

    name: str  # the distribution's family, as reported
    dequantize: bool  # reads (x + u) / 256 of 8-bit images (a density), else x as given
    note: str | None  # what its -ELBO in nats is (None: the Bernoulli's, by the data's binarization)

    def param_channels(self, image_channels: int) -> int:
        """The decoder maps read for an image of `image_channels` channels."""

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per pixel value, (..., C, H, W), fp32."""

    def terms(self, params: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the training loss, log p(x|z)), each per pixel value."""

    def log_prob_samples(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) of whole images for K samples each: (B, K, P, H, W), (B, C, H, W) -> (B, K)."""

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The image the parameters describe, in [0, 1]."""

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A draw x ~ p(x|z), in [0, 1]."""

    def sigma(self) -> float | None:
        """A Gaussian's sigma as evaluation uses it; None without one."""

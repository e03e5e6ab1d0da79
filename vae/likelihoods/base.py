"""The likelihood's interface, its registry, and the 8-bit data protocol every likelihood shares.

A likelihood p(x|z) owns the decoder's output head: it says how many maps the decoder outputs
(`param_channels`), what they mean (`log_prob`, the training `terms`, the `mean` image, a `sample`),
and what data it reads (`dequantize`). The model carries one as `model.likelihood`
(`vae.build.build_model` builds it from the config's `gen_loss` group), and the ELBO, the importance
weights, the evaluation, the latent tools, generate and serve all take it from there
(`vae.likelihoods.likelihood_of`), so every number is the bound of the model that was trained.

Shapes: the decoder's output `params` is (..., P, H, W) with P = `param_channels(C)`; an image x is
(..., C, H, W) in [0, 1], its leading axes broadcasting against the params' (a sample axis in front).
`log_prob` returns (..., C, H, W): per pixel value, so a sum over the last three axes is log p(x|z) of
an image and a mean is per pixel value (a likelihood that couples the channels of a pixel spreads its
log-probability evenly over them).

Protocol for 8-bit images under a density (`dequantize = True`): uniform dequantization (Theis et al.
2016). The model sees y = (x + u) / 256, x in {0..255}, u ~ U[0, 1): drawn afresh every training step,
and drawn once per image from a fixed seed for validation and evaluation (`dequantize_fixed`), so that
the density on [0, 1] is a density of dequantized data and log P(x) >= E_u log p(y) - D log 256. Bits
per dimension are therefore (-ELBO + D ln 256) / (D ln 2) (`bits_per_dim_8bit`). A likelihood of the
discrete values themselves (`dequantize = False`) reads x = k / 255 and its bits/dim are -ELBO / (D ln 2).

To add one: a module in this package with a `Likelihood` subclass, its builder registered with
`@LIKELIHOODS.register("<name>", schema=<a LikelihoodConfig subclass>)`, a file conf/gen_loss/<name>.yaml,
and its tests; the package imports every module in it, and tests/test_conformance.py tests every name.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from vae.registry import Registry

# gen_loss.name -> builder(run config) -> the model's likelihood. The user's key stays `gen_loss=` (bce | l2 |
# gaussian as typed since the first run, now the conf/gen_loss group); vae.config takes its choices from here.
LIKELIHOODS = Registry("gen_loss.name")


class Likelihood(nn.Module):
    """p(x|z) given the decoder's output: the interface every likelihood implements (see the module docstring)."""

    name: ClassVar[str]  # the distribution's family, as reported ("bernoulli", "gaussian", ...)
    dequantize: ClassVar[bool] = False  # reads (x + u) / 256 of 8-bit images (a density), else x as given
    # What its -ELBO in nats is, for eval.json (None: the Bernoulli's, which depends on the data's binarization)
    note: ClassVar[str | None] = None

    def param_channels(self, image_channels: int) -> int:
        """The decoder's output maps this likelihood reads for an image of `image_channels` channels."""
        return image_channels

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per pixel value, fp32, (..., C, H, W); x broadcasts against params' leading axes."""
        raise NotImplementedError

    def terms(self, params: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the training loss, log p(x|z)), each per pixel value: the loss is -log p(x|z) unless the
        likelihood trains on something else (gen_loss=l2). One call, so a likelihood with state
        (an optimal sigma's running average) updates it once per step."""
        log_prob = self.log_prob(params, x)
        return -log_prob, log_prob

    def log_prob_samples(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) of whole images for K samples each: params (B, K, P, H, W), x (B, C, H, W) -> (B, K)."""
        return self.log_prob(params, x.unsqueeze(1)).flatten(2).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """The image the params describe, (..., C, H, W) in [0, 1]: what the latent tools show."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A draw x ~ p(x|z), (..., C, H, W) in [0, 1]."""
        raise NotImplementedError

    def sigma(self) -> float | None:
        """The Gaussian's sigma as evaluation uses it; None for a likelihood without one."""
        return None


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

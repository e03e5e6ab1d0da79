"""Binary pixels: the Bernoulli decoder (`gen_loss=bce`), and its squared-error training loss (`gen_loss=l2`).

log p(x|z) = -BCE(logits, x) per pixel value. On gray-level images it is the same bound under BCE on
gray levels (the lecture's loss), not a likelihood. `gen_loss=l2` trains on the squared error of
sigmoid(logits), which is no normalised density: its runs report the Bernoulli bound of the same logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from vae.likelihoods.base import LIKELIHOODS, Likelihood
from vae.schema import LikelihoodConfig


class Bernoulli(Likelihood):
    """Binary pixels: log p(x|z) = -BCE(logits, x), per pixel value; one logit per pixel value."""

    name = "bernoulli"
    dequantize = False

    def log_prob(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per pixel value, fp32; x broadcasts against logits (a sample axis in front)."""
        logits = logits.float()
        return -F.binary_cross_entropy_with_logits(logits, x.float().expand_as(logits), reduction="none")

    def log_prob_samples(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, K): log p(x|z) = sum_p x_p l_p - softplus(l_p), the x-term one batched matmul, so the K copies
        of x are never materialised (the evaluation's inner loop)."""
        batch, samples = logits.shape[:2]
        logits = logits.float().reshape(batch, samples, -1)  # (B, K, P)
        target = x.float().reshape(batch, -1, 1)  # (B, P, 1)
        return torch.bmm(logits, target).squeeze(-1) - F.softplus(logits).sum(-1)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def sample(self, logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(logits.float()), generator=generator)


class SquaredError(Bernoulli):
    """Trained on (sigmoid(logits) - x)^2 per pixel value; reported (log_prob, mean, sample) as the Bernoulli."""

    def terms(self, logits: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = logits.float()
        return (torch.sigmoid(logits) - x.float()).pow(2), self.log_prob(logits, x)


@LIKELIHOODS.register("bce", schema=LikelihoodConfig)
def _bce(config: Mapping[str, Any]) -> Likelihood:
    return Bernoulli()


@LIKELIHOODS.register("l2", schema=LikelihoodConfig)
def _l2(config: Mapping[str, Any]) -> Likelihood:
    return SquaredError()

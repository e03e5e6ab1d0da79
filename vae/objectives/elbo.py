"""objective=elbo: gen + kl_weight * KL in the run's reduction, with free bits (vae.losses.elbo_loss)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from vae.losses import REDUCTIONS, LossTerms, default_likelihood, elbo_loss
from vae.objectives.base import OBJECTIVES, Objective, ObjectiveContext, as_context
from vae.schema import ObjectiveConfig, likelihood_group


@dataclass(frozen=True)
class ELBO(Objective):
    """gen + kl_weight * KL in the run's reduction, with free bits (vae.losses.elbo_loss): one z per image.

    `kl_scale` multiplies kl_weight (the KL warm-up's share at a training step; 1 elsewhere).
    `likelihood`: the model's (`vae.likelihoods.likelihood_of(model)`); without it, the one `gen_loss` names
    (refused for a likelihood with state of its own, such as gen_loss=gaussian's sigma).
    """

    name: ClassVar[str] = "elbo"
    kl_weight: float
    gen_loss: str
    reduction: str
    free_bits: float = 0.0
    likelihood: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.likelihood is None:
            object.__setattr__(self, "likelihood", default_likelihood(self.gen_loss))
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS} (got {self.reduction!r})")

    @property
    def samples(self) -> int:
        return 1

    def __call__(self, output, x: torch.Tensor, context: ObjectiveContext | float = 1.0) -> LossTerms:
        kl_scale = as_context(context).kl_scale
        return elbo_loss(
            output.logits,
            x,
            output.layers,
            kl_weight=self.kl_weight * kl_scale,
            reduction=self.reduction,
            free_bits=self.free_bits,
            likelihood=self.likelihood,
        )


@OBJECTIVES.register("elbo", schema=ObjectiveConfig)
def _elbo(config: Mapping[str, Any], likelihood=None) -> ELBO:
    name = likelihood_group(config.get("gen_loss"))["name"]
    return ELBO(config["kl_weight"], name, config["reduction"], config["free_bits"], likelihood)

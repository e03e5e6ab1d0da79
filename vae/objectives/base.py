"""The objective's interface and its registry: what training maximises, as one object built once from the config.

An objective is called as `objective(output, x, kl_scale)` on a model's output (`vae.model.VAEOutput`)
and returns the `LossTerms`; `objective.samples` is the number of z it needs per image (the trainer
and the validation pass draw eps of shape (B, L) for 1, (samples, B, L) for more). A new objective is a
module in this package with such a class and its builder registered in `OBJECTIVES` (the config accepts
its name), a conf/objective/<name>.yaml and its tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from vae.losses import LossTerms
from vae.registry import Registry

# objective.name -> builder(run config) -> the Objective.
OBJECTIVES = Registry("objective.name")


class Objective:
    """The interface: `samples` per image, and a call on (output, x, kl_scale) -> LossTerms."""

    name: ClassVar[str]

    @property
    def samples(self) -> int:
        raise NotImplementedError

    def __call__(self, output, x: torch.Tensor, kl_scale: float = 1.0) -> LossTerms:
        raise NotImplementedError

    @staticmethod
    def from_config(config: Mapping[str, Any]) -> Objective:
        return build_objective(config)


def build_objective(config: Mapping[str, Any], likelihood=None) -> Objective:
    """The objective of a run's config: its `objective` group (absent in runs saved before it existed: the ELBO)
    with the top-level loss keys (kl_weight, gen_loss, reduction, free_bits), and the model's likelihood
    (`vae.likelihoods.likelihood_of(model)`; gen_loss=gaussian needs it)."""
    objective = config.get("objective") or {"name": "elbo"}
    return OBJECTIVES.get(objective["name"])(config, likelihood)

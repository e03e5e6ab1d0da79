"""The objective's interface and its registry: what training maximises, as one object built once from the config.

An objective is called as `objective(output, x, context)` on a model's output (`vae.model.VAEOutput`), with
an `ObjectiveContext` (the step, the KL warm-up's kl_scale, the training set's size, the model's likelihood
and prior), and returns the `LossTerms`, its own named terms (`extra_names`) included; `objective.samples` is the number of z it needs per image (the trainer
and the validation pass draw eps of shape (B, L) for 1, (samples, B, L) for more). A new objective is a
module in this package with such a class and its builder registered in `OBJECTIVES` (the config accepts
its name), a conf/objective/<name>.yaml and its tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from vae.losses import LossTerms, term_names
from vae.registry import Registry

# objective.name -> builder(run config) -> the Objective.
OBJECTIVES = Registry("objective.name")


@dataclass(frozen=True)
class ObjectiveContext:
    """What an objective may read beside the model's output and x, at each call.

    `step`: the training step (0 outside training); `kl_scale`: the KL warm-up's share of kl_weight (1
    outside training); `num_train`: the training split's size (an estimator over the data set, such as
    minibatch-weighted sampling, needs it; None where unknown); `likelihood` and `prior`: the model's
    (`model.likelihood`, `model.prior`), None where the caller has no model at hand.
    """

    step: int = 0
    kl_scale: float = 1.0
    num_train: int | None = None
    likelihood: Any = None
    prior: Any = None


def as_context(context: ObjectiveContext | float) -> ObjectiveContext:
    """A call's context; a bare number is the kl_scale, as objectives were called before the context existed."""
    return context if isinstance(context, ObjectiveContext) else ObjectiveContext(kl_scale=float(context))


class Objective:
    """The interface: `samples` per image, and a call on (output, x, context) -> LossTerms.

    The terms every objective returns are `vae.losses.TERM_NAMES` (the loss it minimises, and the -ELBO,
    reconstruction and KL in nats per image with beta 1, so runs compare) and each layer's KL when there
    are several; `extra_names` declares its own (`LossTerms.extras`, in that order).
    """

    name: ClassVar[str]
    extra_names: ClassVar[tuple[str, ...]] = ()

    def term_names(self, num_layers: int = 1) -> tuple[str, ...]:
        """Every term this objective reports for a model of `num_layers` stochastic layers, in order."""
        return term_names(num_layers) + self.extra_names

    @property
    def samples(self) -> int:
        raise NotImplementedError

    def __call__(self, output, x: torch.Tensor, context: ObjectiveContext | float = 1.0) -> LossTerms:
        """The terms on one batch; `context` an ObjectiveContext (a number: its kl_scale)."""
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

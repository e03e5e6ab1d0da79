"""What training maximises, as one object built once from the config: `ELBO` or `IWAE`.

An objective is called as `objective(output, x, kl_scale)` on a model's output (`vae.model.VAEOutput`)
and returns the `LossTerms`; `objective.samples` is the number of z it needs per image (the trainer
and the validation pass draw eps of shape (B, L) for 1, (samples, B, L) for more). A new objective
is a class here with those two, and its builder registered in `OBJECTIVES` (the config accepts its name).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from omegaconf import MISSING

from vae.errors import ConfigError
from vae.losses import ESTIMATORS, REDUCTIONS, LossTerms, default_likelihood, elbo_loss, iwae_loss
from vae.registry import Registry
from vae.schema import Get, ObjectiveConfig, check_at_least, check_choice, likelihood_group

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

    def __call__(self, output, x: torch.Tensor, kl_scale: float = 1.0) -> LossTerms:
        return elbo_loss(
            output.logits,
            x,
            output.layers,
            kl_weight=self.kl_weight * kl_scale,
            reduction=self.reduction,
            free_bits=self.free_bits,
            likelihood=self.likelihood,
        )


@dataclass(frozen=True)
class IWAE(Objective):
    """Burda et al.'s k-sample bound (vae.losses.iwae_loss), its gradient plain (`iwae`) or doubly reparameterized (`dreg`).

    A bound on the true likelihood: no KL weight, so `kl_scale` does not apply (the config refuses a warm-up).
    """

    name: ClassVar[str] = "iwae"
    k: int
    estimator: str = "iwae"
    likelihood: Any = field(default=None, compare=False, repr=False)  # the model's; None: Bernoulli

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"objective.estimator must be one of {ESTIMATORS} (got {self.estimator!r})")
        if self.k < 1:
            raise ValueError(f"objective.k must be an integer >= 1 (got {self.k!r})")

    @property
    def samples(self) -> int:
        return self.k

    def __call__(self, output, x: torch.Tensor, kl_scale: float = 1.0) -> LossTerms:
        return iwae_loss(output.logits, x, output.layers, estimator=self.estimator, likelihood=self.likelihood)


@OBJECTIVES.register("elbo", schema=ObjectiveConfig)
def _elbo(config: Mapping[str, Any], likelihood=None) -> ELBO:
    name = likelihood_group(config.get("gen_loss"))["name"]
    return ELBO(config["kl_weight"], name, config["reduction"], config["free_bits"], likelihood)


# What objective=iwae needs: the importance-weighted bound is a bound on the true likelihood only.
IWAE_NEEDS = {"gen_loss.name": "bce", "reduction": "sum", "kl_weight": 1.0, "free_bits": 0.0, "kl_warmup_epochs": 0.0}


@dataclass
class IWAEObjectiveConfig(ObjectiveConfig):
    k: int = MISSING  # importance samples per image
    estimator: str = MISSING  # iwae (the bound's plain gradient) | dreg (Tucker et al.'s doubly reparameterized)

    @classmethod
    def check(cls, get: Get) -> None:
        """k and the estimator; and the run's weighting of the terms: the bound on log p(x) admits no other."""
        check_at_least(get, 1, "objective.k")
        check_choice(get, "objective.estimator", ESTIMATORS)
        # a group's name is typed as the group: gen_loss=bce
        wrong = [f"{key.removesuffix('.name')}={get(key)}" for key, needed in IWAE_NEEDS.items() if get(key) != needed]
        if wrong:
            needs = " ".join(
                f"{key}={needed:g}" if isinstance(needed, float) else f"{key.removesuffix('.name')}={needed}"
                for key, needed in IWAE_NEEDS.items()
            )
            raise ConfigError(
                f"objective=iwae is the importance-weighted bound on the true likelihood and needs {needs}; "
                f"got {', '.join(wrong)}"
            )


@OBJECTIVES.register("iwae", schema=IWAEObjectiveConfig)
def _iwae(config: Mapping[str, Any], likelihood=None) -> IWAE:
    objective = config["objective"]
    return IWAE(objective["k"], objective["estimator"], likelihood)  # Bernoulli (the config checks gen_loss=bce)


def build_objective(config: Mapping[str, Any], likelihood=None) -> Objective:
    """The objective of a run's config: its `objective` group (absent in runs saved before it existed: the ELBO)
    with the top-level loss keys (kl_weight, gen_loss, reduction, free_bits), and the model's likelihood
    (`vae.likelihoods.likelihood_of(model)`; gen_loss=gaussian needs it)."""
    objective = config.get("objective") or {"name": "elbo"}
    return OBJECTIVES.get(objective["name"])(config, likelihood)

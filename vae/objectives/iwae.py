"""objective=iwae: Burda et al.'s k-sample importance-weighted bound (vae.losses.iwae_loss), plain or DReG gradient."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from omegaconf import MISSING

from vae.errors import ConfigError
from vae.losses import ESTIMATORS, LossTerms, iwae_loss
from vae.objectives.base import OBJECTIVES, Objective, ObjectiveContext
from vae.schema import Get, ObjectiveConfig, check_at_least, check_choice


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

    def __call__(self, output, x: torch.Tensor, context: ObjectiveContext | float = 1.0) -> LossTerms:
        return iwae_loss(output.logits, x, output.layers, estimator=self.estimator, likelihood=self.likelihood)


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

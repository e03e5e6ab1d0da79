"""prior=standard: N(0, I), the prior of every model so far (vae.distributions.StandardNormal; its KL in closed form)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vae.distributions import StandardNormal
from vae.priors.base import PRIORS
from vae.schema import PriorConfig


@PRIORS.register("standard", schema=PriorConfig)
def _standard(config: Mapping[str, Any], model) -> StandardNormal:
    return StandardNormal(model.latent_dim)

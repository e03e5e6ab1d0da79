"""The top layer's prior (`prior=<name>`), one module per option: the registry in vae/priors/base.py,
`prior=standard` (N(0, I)) in standard.py, and every other module of this package (imported here, so
that adding a prior is adding its module, its conf/prior/<name>.yaml and its tests).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from vae.priors.base import PRIORS
from vae.schema import prior_group

# Every module registers its option on import: standard first, then any other in the package.
for _name in ("standard", *sorted(module.name for module in pkgutil.iter_modules(__path__))):
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["PRIORS", "build_prior"]


def build_prior(config: Mapping[str, Any], model):
    """The run config's prior for `model`'s top layer (a config saved before the prior group existed: standard)."""
    return PRIORS.get(prior_group(config.get("prior"))["name"])(config, model)

"""The objectives (`objective=<name>`), one module per option: the interface and registry in
vae/objectives/base.py, `ELBO` in elbo.py, `IWAE` in iwae.py. This package imports every module in it,
so adding an objective is adding its module, its conf/objective/<name>.yaml and its tests.
"""

from __future__ import annotations

import importlib
import pkgutil

from vae.objectives.base import OBJECTIVES, Objective, ObjectiveContext, as_context, build_objective
from vae.objectives.elbo import ELBO
from vae.objectives.iwae import IWAE, IWAE_NEEDS, IWAEObjectiveConfig

# Every module registers its option on import: elbo and iwae above, then any other in the package.
for _module in sorted(module.name for module in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "ELBO",
    "IWAE",
    "IWAE_NEEDS",
    "OBJECTIVES",
    "IWAEObjectiveConfig",
    "Objective",
    "ObjectiveContext",
    "as_context",
    "build_objective",
]

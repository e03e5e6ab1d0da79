"""The model options (`model=<name>`), one module per option: its schema (the dataclass of its keys, with
`check`) and its builder, registered in `MODELS` (vae/models/base.py). The networks themselves are library
modules (vae/model.py, vae/resnet.py, vae/hvae.py). This package imports every module in it, so adding a
model is adding its module, its conf/model/<name>.yaml and its tests (docs/design.md section 4).
"""

from __future__ import annotations

import importlib
import pkgutil

from vae.models.base import MODELS, check_channels

SHIPPED = ("conv", "mlp", "resnet", "hvae")  # registered first, in the order --help and the errors list them

# Every module registers its option on import: the shipped ones, then any other in the package.
for _name in (*SHIPPED, *sorted(module.name for module in pkgutil.iter_modules(__path__))):
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["MODELS", "check_channels"]

"""The data set options (`data=<name>`), one module per option: its schema and its builder, registered in
`DATASETS` (vae/datasets/base.py); the loaders are library code (vae/data.py). This package imports every
module in it, so adding a data set is adding its module, its conf/data/<name>.yaml and its tests.
"""

from __future__ import annotations

import importlib
import pkgutil

from vae.datasets.base import DATASETS, DecodedDataConfig, DownloadableDataConfig

SHIPPED = (
    "mnist",
    "cifar10",
    "folder",
    "celeba",
    "synthetic",
)  # registered first, in the order --help and the errors list them

# Every module registers its option on import: the shipped ones, then any other in the package.
for _name in (*SHIPPED, *sorted(module.name for module in pkgutil.iter_modules(__path__))):
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["DATASETS", "DecodedDataConfig", "DownloadableDataConfig"]

"""data=mnist and data=fashion_mnist: the IDX files torchvision's folders hold (vae/data.py `load_idx`)."""

from __future__ import annotations

from vae.data import TORCHVISION_FOLDERS
from vae.datasets.base import DATASETS, DownloadableDataConfig, torchvision_idx

for _name in TORCHVISION_FOLDERS:  # mnist, fashion_mnist
    DATASETS.register(_name, schema=DownloadableDataConfig)(torchvision_idx(_name))

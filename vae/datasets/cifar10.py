"""data=cifar10: CIFAR-10's python batches (vae/data.py `load_cifar10`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vae.data import load_cifar10
from vae.datasets.base import DATASETS, DownloadableDataConfig, downloadable


@DATASETS.register("cifar10", schema=DownloadableDataConfig)
def _cifar10(data: Mapping[str, Any]) -> tuple:
    return downloadable("cifar10", data, load=load_cifar10)

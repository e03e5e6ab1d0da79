"""data=<name>: the registry of data set builders, and what several data sets share.

A builder is `@DATASETS.register("<name>", schema=<Name>DataConfig)`: it takes the config's `data` group and
returns (train, test, number held out for validation, class names, validation source), or a
`vae.data.StoredData` of the same, which may add the data set's own validation split (val_source official)
and its attribute names (celeba). `vae.build.build_data` makes the splits from it. The loaders themselves
are library code (vae/data.py, vae/image_cache.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vae.data import CLASS_NAMES, DataNotFoundError, load_idx
from vae.registry import Registry
from vae.schema import DataConfig, Get, check, check_at_least

# data.name -> builder(data_cfg) -> (train, test, num_val, class_names, val_source) or a vae.data.StoredData.
DATASETS = Registry("data.name")


@dataclass
class DownloadableDataConfig(DataConfig):
    """A published data set (MNIST, Fashion-MNIST, CIFAR-10): files under `root`, downloaded when missing."""

    root: str | None = "${oc.env:VAE_DATA_DIR,./data}"
    download: bool = True
    val_split: int = 5000  # images of the training split held out for validation

    @classmethod
    def check(cls, get: Get) -> None:
        super().check(get)
        check_at_least(get, 1, "data.val_split")
        check(get("data.root") not in (None, ""), "data.root", "a folder (or set VAE_DATA_DIR)", get("data.root"))


def downloadable(name: str, data: Mapping[str, Any], load: Callable[..., tuple]) -> tuple:
    if data["root"] is None:
        raise DataNotFoundError(f"{name}: data.root is not set")
    train, test = load(data["root"], download=data["download"])
    return train, test, data["val_split"], CLASS_NAMES[name], data["val_source"]


def torchvision_idx(name: str) -> Callable[[Mapping[str, Any]], tuple]:
    def build(data: Mapping[str, Any]) -> tuple:
        return downloadable(name, data, load=lambda root, download: load_idx(name, root, download=download))

    return build


def image_cache(data: Mapping[str, Any]):
    """The decode cache's folder (vae.image_cache), or None for data.cache=false; runs saved before
    data.cache existed decoded every launch."""
    from vae.image_cache import cache_folder

    return cache_folder(data.get("cache_dir")) if data.get("cache", False) else None


@dataclass
class DecodedDataConfig(DataConfig):
    """Data sets decoded from image files (folder, celeba): the decoded images are cached (vae/image_cache.py)."""

    cache: bool = True  # save the decoded uint8 images once and read them back next launch (false: decode every launch)
    cache_dir: str | None = None  # null: $VAE_CACHE_DIR, else $XDG_CACHE_HOME/vae, else ~/.cache/vae

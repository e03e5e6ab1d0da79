"""data=folder: any folder of images, decoded once (vae/data.py `load_image_folder`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from vae.data import hold_out, load_image_folder
from vae.datasets.base import DATASETS, DecodedDataConfig, image_cache
from vae.schema import Get, check, check_at_least


@dataclass
class FolderDataConfig(DecodedDataConfig):
    """Any folder of images; a share of it is held out for validation and evaluation."""

    path: str = MISSING
    image_size: int = MISSING
    channels: int = MISSING
    val_fraction: float = MISSING
    skip_bad: bool = False  # skip unreadable files (counted) instead of stopping

    @classmethod
    def check(cls, get: Get) -> None:
        check_at_least(get, 1, "data.image_size")  # before the base's image_shape, made of it
        super().check(get)
        check(get("data.path") not in (None, ""), "data.path", "a folder of images", get("data.path"))
        fraction = get("data.val_fraction")
        check(0 < fraction < 1, "data.val_fraction", "a number between 0 and 1", fraction)
        shape = get("data.image_shape")
        check(
            shape[1] == shape[2] == get("data.image_size"),
            "data.image_size",
            f"the side of data.image_shape {shape}",
            get("data.image_size"),
        )


@DATASETS.register("folder", schema=FolderDataConfig)
def _folder(data: Mapping[str, Any]) -> tuple:
    everything, class_names, _ = load_image_folder(
        data["path"],
        image_size=data["image_size"],
        channels=data["channels"],
        skip_bad=data["skip_bad"],
        cache=image_cache(data),
    )
    num_val = max(1, round(data["val_fraction"] * len(everything)))
    train, test = hold_out(everything, num_val, seed=data["split_seed"])  # a folder has no test split
    return train, test, num_val, class_names, "test"  # the held-out part serves as validation and test

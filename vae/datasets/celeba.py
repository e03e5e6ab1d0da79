"""data=celeba: CelebA's aligned faces with the official partition and the 40 attributes (vae/data.py `load_celeba`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from vae.data import DataNotFoundError, StoredData, load_celeba
from vae.datasets.base import DATASETS, DecodedDataConfig, image_cache
from vae.schema import Get, check, check_at_least

CELEBA_WIDTH = 178  # CelebA's aligned images are 178 x 218: data.crop fits in them


@dataclass
class CelebADataConfig(DecodedDataConfig):
    """CelebA's aligned images in torchvision's layout under root/celeba, centre-cropped and resized."""

    official_val = True  # CelebA's own validation partition: data.val_source=official

    image_size: int = MISSING
    crop: int = MISSING  # the centred crop x crop square taken before resizing
    channels: int = MISSING

    @classmethod
    def check(cls, get: Get) -> None:
        check_at_least(get, 1, "data.image_size", "data.crop")  # before the base's image_shape, made of them
        super().check(get)
        check(
            get("data.root") not in (None, ""),
            "data.root",
            "a folder holding celeba/ (or set VAE_DATA_DIR)",
            get("data.root"),
        )
        size, crop, channels = get("data.image_size"), get("data.crop"), get("data.channels")
        check(crop >= size, "data.crop", f"at least data.image_size ({size})", crop)
        check(crop <= CELEBA_WIDTH, "data.crop", f"at most {CELEBA_WIDTH} (the aligned images are 178 x 218)", crop)
        check(channels in (1, 3), "data.channels", "1 (gray) or 3 (RGB)", channels)
        shape = get("data.image_shape")
        check(shape == [channels, size, size], "data.image_shape", f"[{channels}, {size}, {size}]", shape)


@DATASETS.register("celeba", schema=CelebADataConfig)
def _celeba(data: Mapping[str, Any]) -> StoredData:
    if data["root"] is None:
        raise DataNotFoundError("celeba: data.root is not set")
    splits, attribute_names = load_celeba(
        data["root"],
        image_size=data["image_size"],
        crop=data["crop"],
        channels=data["channels"],
        download=data["download"],
        cache=image_cache(data),
    )
    # The official partition: validation is CelebA's own (data.val_source is official, fixed).
    return StoredData(
        train=splits["train"],
        test=splits["test"],
        num_val=len(splits["valid"]),
        class_names=["all"],
        val_source="official",
        val=splits["valid"],
        attribute_names=attribute_names,
    )

"""data=synthetic: images drawn in memory, for tests and for trying the code offline (vae/data.py `make_synthetic`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from vae.data import CLASS_NAMES, make_synthetic
from vae.datasets.base import DATASETS
from vae.schema import DataConfig, Get, check_at_least


@dataclass
class SyntheticDataConfig(DataConfig):
    """Images drawn in memory, for tests and for trying the code offline."""

    num_train: int = MISSING
    num_val: int = MISSING
    num_test: int = MISSING

    @classmethod
    def check(cls, get: Get) -> None:
        super().check(get)
        check_at_least(get, 1, "data.num_train", "data.num_val", "data.num_test")


@DATASETS.register("synthetic", schema=SyntheticDataConfig)
def _synthetic(data: Mapping[str, Any]) -> tuple:
    image_shape, num_classes, split_seed = tuple(data["image_shape"]), data["num_classes"], data["split_seed"]
    train = make_synthetic(
        data["num_train"] + data["num_val"], image_shape=image_shape, num_classes=num_classes, seed=split_seed
    )
    test = make_synthetic(data["num_test"], image_shape=image_shape, num_classes=num_classes, seed=split_seed + 1)
    return train, test, data["num_val"], CLASS_NAMES["synthetic"], data["val_source"]

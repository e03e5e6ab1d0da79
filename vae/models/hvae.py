"""model=hvae: stochastic layers with top-down inference on the resnet stages (the network: vae/hvae.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from vae.hvae import hvae
from vae.models.base import MODELS
from vae.models.resnet import ResNetModelConfig, residual_keys
from vae.schema import Get, check, positive_ints


@dataclass
class HVAEModelConfig(ResNetModelConfig):
    lower_latent_dims: list[int] = MISSING  # the stochastic layers under the top one (latent_dim), from x up

    @classmethod
    def check(cls, get: Get) -> None:
        super().check(get)
        check(
            positive_ints(get("model.lower_latent_dims"), min_length=1),
            "model.lower_latent_dims",
            "a list of at least 1 positive integer (the layers under the top one, from x up)",
            get("model.lower_latent_dims"),
        )


@MODELS.register("hvae", schema=HVAEModelConfig)
def _hvae(
    model_cfg: Mapping[str, Any],
    *,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    output_channels: int | None = None,
):
    lower = tuple(model_cfg["lower_latent_dims"])
    return hvae(
        image_shape=image_shape,
        latent_dim=latent_dim,
        lower_latent_dims=lower,
        output_channels=output_channels,
        **residual_keys(model_cfg),
    )

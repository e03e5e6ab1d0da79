"""model=conv: the lecture's conv VAE (the network: vae/model.py `conv_vae`, `ConvEncoder`, `ConvDecoder`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from vae.model import VAE, conv_vae
from vae.models.base import MODELS, check_channels
from vae.schema import Get, ModelConfig, check_at_least


@dataclass
class ConvModelConfig(ModelConfig):
    channels: list[int] = MISSING  # encoder convs; the second one has stride 2
    hidden_dim: int = MISSING  # the dense layer before the mu / log_var heads, and after z

    @classmethod
    def check(cls, get: Get) -> None:
        super().check(get)
        check_at_least(get, 1, "model.hidden_dim")
        check_channels(get, min_length=2)  # the lecture's net strides in its second conv


@MODELS.register("conv", schema=ConvModelConfig)
def _conv(
    model_cfg: Mapping[str, Any],
    *,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    output_channels: int | None = None,
) -> VAE:
    return conv_vae(
        image_shape=image_shape,
        latent_dim=latent_dim,
        channels=tuple(model_cfg["channels"]),
        hidden_dim=model_cfg["hidden_dim"],
        output_channels=output_channels,
    )

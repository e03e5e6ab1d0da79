"""model=mlp: an MLP VAE, Burda et al.'s (the network: vae/model.py `mlp_vae`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from vae.model import ACTIVATIONS, VAE, mlp_vae
from vae.models.base import MODELS
from vae.schema import Get, ModelConfig, check, check_choice, positive_ints


@dataclass
class MLPModelConfig(ModelConfig):
    hidden_dims: list[int] = MISSING
    activation: str = MISSING  # relu | tanh | silu | elu

    @classmethod
    def check(cls, get: Get) -> None:
        super().check(get)
        check_choice(get, "model.activation", tuple(ACTIVATIONS))
        check(
            positive_ints(get("model.hidden_dims")),
            "model.hidden_dims",
            "a list of positive integers",
            get("model.hidden_dims"),
        )


@MODELS.register("mlp", schema=MLPModelConfig)
def _mlp(
    model_cfg: Mapping[str, Any],
    *,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    output_channels: int | None = None,
) -> VAE:
    return mlp_vae(
        image_shape=image_shape,
        latent_dim=latent_dim,
        hidden_dims=tuple(model_cfg["hidden_dims"]),
        activation=model_cfg.get("activation", "relu"),  # runs saved before the key existed used ReLU
        output_channels=output_channels,
    )

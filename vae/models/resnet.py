"""model=resnet: residual conv stages both ways, one Gaussian latent (the network: vae/resnet.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from vae.model import ACTIVATIONS, VAE
from vae.models.base import MODELS, check_channels
from vae.resnet import resnet_vae
from vae.schema import Get, ModelConfig, check, check_at_least, check_choice


def residual_keys(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keys the residual conv stages of vae/resnet.py take, shared by model=resnet and model=hvae."""
    return {
        "channels": tuple(model_cfg["channels"]),
        "blocks": model_cfg["blocks"],
        "hidden_dim": model_cfg["hidden_dim"],
        "activation": model_cfg["activation"],
    }


@dataclass
class ResNetModelConfig(ModelConfig):
    channels: list[int] = MISSING  # one stage per entry: a stride-2 conv to this width, then `blocks` residual blocks
    blocks: int = MISSING  # residual blocks per stage
    hidden_dim: int = MISSING  # the dense layer between the feature map and the latent
    activation: str = MISSING  # silu | relu | elu | tanh

    @classmethod
    def check(cls, get: Get) -> None:
        super().check(get)
        check_at_least(get, 1, "model.hidden_dim")
        check_choice(get, "model.activation", tuple(ACTIVATIONS))
        check_channels(get, min_length=1)
        blocks = get("model.blocks")
        check(isinstance(blocks, int) and blocks >= 0, "model.blocks", "an integer >= 0", blocks)


@MODELS.register("resnet", schema=ResNetModelConfig)
def _resnet(
    model_cfg: Mapping[str, Any],
    *,
    image_shape: tuple[int, int, int],
    latent_dim: int,
    output_channels: int | None = None,
) -> VAE:
    return resnet_vae(
        image_shape=image_shape, latent_dim=latent_dim, output_channels=output_channels, **residual_keys(model_cfg)
    )

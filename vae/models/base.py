"""model=<name>: the registry of model builders, and the checks the shipped models share.

A builder is `@MODELS.register("<name>", schema=<Name>ModelConfig)`: it takes `(model_cfg, *, image_shape,
latent_dim, output_channels=None)` and returns the model (the contract: vae/contracts.py `VAEModel`;
`vae.model.VAE` is the reference). `vae.build.build_model` calls it, initialises the weights and attaches the
likelihood, whose maps (`output_channels`) the decoder outputs.
"""

from __future__ import annotations

from vae.registry import Registry
from vae.schema import Get, check, positive_ints

# model.name -> builder(model_cfg, *, image_shape, latent_dim[, output_channels]) -> the model.
MODELS = Registry("model.name")


def check_channels(get: Get, *, min_length: int) -> None:
    check(
        positive_ints(get("model.channels"), min_length=min_length),
        "model.channels",
        f"a list of at least {min_length} positive integers",
        get("model.channels"),
    )

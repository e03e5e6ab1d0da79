"""Builders: the one place that turns a config into objects (data, model, optimizer).

Each kind's options are a `vae.registry.Registry`: DATASETS and MODELS are packages of one module per
option (vae/datasets/, vae/models/, re-exported here), OPTIMIZERS is here. Another option is one more
`@REGISTRY.register(name, schema=...)` builder, with its schema (the dataclass of its keys, a subclass of
the group's base in vae/schema.py, and its `check`) just above it; the config accepts its name, types its
keys and checks their values with nothing else edited.

Library code never looks at the config; these functions read it and call the library with
every value spelled out, so no default is repeated outside the config.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from omegaconf import MISSING

from vae.data import (
    DataSplits,
    StoredData,
    make_splits,
)
from vae.datasets import DATASETS
from vae.errors import ConfigError
from vae.likelihoods import build_likelihood
from vae.model import VAE, init_glorot
from vae.models import MODELS
from vae.priors import build_prior
from vae.registry import Registry
from vae.schedules import lr_factor, lr_scheduler, stage_steps
from vae.schema import (
    OptimConfig,
    likelihood_group,
)


def build_data(cfg: Mapping[str, Any]) -> DataSplits:
    """The train / val / test splits the config's data group names (any data set in DATASETS)."""
    data = cfg["data"]
    stored = DATASETS.get(data["name"])(data)
    stored = stored if isinstance(stored, StoredData) else StoredData(*stored)
    return make_splits(
        stored.train,
        stored.test,
        val_source=stored.val_source,
        num_val=stored.num_val,
        split_seed=data["split_seed"],
        binarize=data["binarize"],
        class_names=stored.class_names,
        val=stored.val,
        attribute_names=stored.attribute_names,
    )


def build_model(cfg: Mapping[str, Any]) -> VAE:
    """The VAE the config's model group names, for the data's image shape, initialised as it says, with
    its likelihood (`model.likelihood`, from gen_loss and decoder_sigma)."""
    model_cfg, image_shape, latent_dim = cfg["model"], tuple(cfg["data"]["image_shape"]), cfg["latent_dim"]
    builder = MODELS.get(model_cfg["name"])
    likelihood = build_likelihood(cfg)
    # The decoder outputs the likelihood's parameters: as many maps as it reads. A builder is asked for other
    # than the image's channels only when the likelihood needs it, so a builder without `output_channels`
    # serves every likelihood that reads one map per channel.
    extra = {}
    channels = likelihood.param_channels(image_shape[0])
    if channels != image_shape[0]:
        if "output_channels" not in inspect.signature(builder).parameters:
            raise ConfigError(
                f"model={model_cfg['name']} cannot output the {channels} maps gen_loss={likelihood_group(cfg.get('gen_loss'))['name']} reads "
                "(its builder takes no output_channels)"
            )
        extra["output_channels"] = channels
    model = builder(model_cfg, image_shape=image_shape, latent_dim=latent_dim, **extra)
    if model_cfg["init"] == "glorot":
        init_glorot(model)
    elif model_cfg["init"] != "torch":
        raise ValueError(f"model.init must be glorot or torch (got {model_cfg['init']!r})")
    # p(x|z): Bernoulli, or the Gaussian of gen_loss=gaussian, whose sigma (learned: a parameter) lives in
    # the model, so that the optimizer trains it and checkpoints keep it (vae.likelihoods).
    model.likelihood = likelihood
    # p(z) of the top layer: N(0, I), or a learned prior (a module: its parameters are the model's).
    model.prior = build_prior(cfg, model)
    return model


# optim.name -> builder(parameters (a list), optim_cfg) -> the optimizer.
OPTIMIZERS = Registry("optim.name")


@dataclass
class AdamConfig(OptimConfig):
    betas: list[float] = MISSING


@OPTIMIZERS.register("adam", schema=AdamConfig)
def _adam(parameters: list[torch.nn.Parameter], optim: Mapping[str, Any]) -> torch.optim.Optimizer:
    # The fused kernel updates every tensor in one pass: 4x faster than the per-tensor loop on CPU
    # for the lecture model (experiments/bench/README.md), same update.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in parameters)
    return torch.optim.Adam(
        parameters,
        lr=optim["lr"],
        betas=tuple(optim["betas"]),
        eps=optim["eps"],
        weight_decay=optim["weight_decay"],
        fused=fused or None,
    )


@dataclass
class RMSpropConfig(OptimConfig):
    alpha: float = MISSING


@OPTIMIZERS.register("rmsprop", schema=RMSpropConfig)
def _rmsprop(parameters: list[torch.nn.Parameter], optim: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        parameters, lr=optim["lr"], alpha=optim["alpha"], eps=optim["eps"], weight_decay=optim["weight_decay"]
    )


def build_optimizer(parameters: Iterable[torch.nn.Parameter], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """The optimizer the config's optim group names (any in OPTIMIZERS: adam, rmsprop), with its settings."""
    optim = cfg["optim"]
    return OPTIMIZERS.get(optim["name"])(list(parameters), optim)


def warmup_steps(optim: Mapping[str, Any], *, steps_per_epoch: int) -> int:
    """The warm-up's length in steps: optim.warmup_steps, at most optim.max_warmup_epochs of an epoch.

    The bound depends on the epoch's length only, never on the run's: a constant schedule's
    first epochs are the same whatever `epochs` is.
    """
    bound = optim["max_warmup_epochs"]
    if not bound:
        return optim["warmup_steps"]
    return min(optim["warmup_steps"], math.floor(bound * steps_per_epoch))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], *, steps_per_epoch: int):
    """The config's learning-rate schedule over the run's length (epochs x steps_per_epoch), as a LambdaLR."""
    optim = cfg["optim"]
    factor = partial(
        lr_factor,
        schedule=optim["schedule"],
        warmup_steps=warmup_steps(optim, steps_per_epoch=steps_per_epoch),
        total_steps=cfg["epochs"] * steps_per_epoch,
        floor_ratio=optim["lr_floor"] / optim["lr"],
        stages=stage_steps(
            [(epochs / optim["stage_divisor"], lr) for epochs, lr in optim["stages"]],
            steps_per_epoch=steps_per_epoch,
            base_lr=optim["lr"],
        ),
    )
    return lr_scheduler(optimizer, factor)

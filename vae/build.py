"""Builders: the one place that turns a config into objects (data, model, optimizer).

Library code never looks at the config; these functions read it and call the library with
every value spelled out, so no default is repeated outside the config.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import torch

from vae.data import (
    CLASS_NAMES,
    TORCHVISION_FOLDERS,
    DataNotFoundError,
    DataSplits,
    hold_out,
    load_cifar10,
    load_idx,
    load_image_folder,
    make_splits,
    make_synthetic,
)
from vae.model import VAE, conv_vae, init_glorot, mlp_vae
from vae.schedules import lr_factor, lr_scheduler, stage_steps


def build_data(cfg: Mapping[str, Any]) -> DataSplits:
    """The train / val / test splits the config's data group names."""
    data = cfg["data"]
    name, split_seed = data["name"], data["split_seed"]
    image_shape, num_classes = tuple(data["image_shape"]), data["num_classes"]
    val_source = data["val_source"]
    if name == "synthetic":
        train = make_synthetic(
            data["num_train"] + data["num_val"], image_shape=image_shape, num_classes=num_classes, seed=split_seed
        )
        test = make_synthetic(data["num_test"], image_shape=image_shape, num_classes=num_classes, seed=split_seed + 1)
        num_val, class_names = data["num_val"], CLASS_NAMES["synthetic"]
    elif name in TORCHVISION_FOLDERS or name == "cifar10":
        if data["root"] is None:
            raise DataNotFoundError(f"{name}: data.root is not set")
        load = load_cifar10 if name == "cifar10" else lambda root, download: load_idx(name, root, download=download)
        train, test = load(data["root"], download=data["download"])
        num_val, class_names = data["val_split"], CLASS_NAMES[name]
    elif name == "folder":
        everything, class_names, _ = load_image_folder(
            data["path"], image_size=data["image_size"], channels=data["channels"], skip_bad=data["skip_bad"]
        )
        num_val = max(1, round(data["val_fraction"] * len(everything)))
        train, test = hold_out(everything, num_val, seed=split_seed)  # a folder has no test split
        val_source = "test"  # the held-out part serves as validation and test
    else:
        raise ValueError(f"data.name must be mnist, fashion_mnist, cifar10, folder or synthetic (got {name!r})")
    return make_splits(
        train,
        test,
        val_source=val_source,
        num_val=num_val,
        split_seed=split_seed,
        binarize=data["binarize"],
        class_names=class_names,
    )


def _conv(model_cfg: Mapping[str, Any], *, image_shape: tuple[int, int, int], latent_dim: int) -> VAE:
    return conv_vae(
        image_shape=image_shape,
        latent_dim=latent_dim,
        channels=tuple(model_cfg["channels"]),
        hidden_dim=model_cfg["hidden_dim"],
    )


def _mlp(model_cfg: Mapping[str, Any], *, image_shape: tuple[int, int, int], latent_dim: int) -> VAE:
    return mlp_vae(
        image_shape=image_shape,
        latent_dim=latent_dim,
        hidden_dims=tuple(model_cfg["hidden_dims"]),
        activation=model_cfg.get("activation", "relu"),  # runs saved before the key existed used ReLU
    )


# model.name -> builder(model_cfg, *, image_shape, latent_dim) -> the model (see vae.model.VAE for what
# it provides). Another model is one more entry (the config accepts every name in it).
MODELS: dict[str, Callable[..., torch.nn.Module]] = {"conv": _conv, "mlp": _mlp}


def build_model(cfg: Mapping[str, Any]) -> VAE:
    """The VAE the config's model group names, for the data's image shape, initialised as it says."""
    model_cfg, image_shape, latent_dim = cfg["model"], tuple(cfg["data"]["image_shape"]), cfg["latent_dim"]
    if model_cfg["name"] not in MODELS:
        raise ValueError(f"model.name must be one of {', '.join(MODELS)} (got {model_cfg['name']!r})")
    model = MODELS[model_cfg["name"]](model_cfg, image_shape=image_shape, latent_dim=latent_dim)
    if model_cfg["init"] == "glorot":
        init_glorot(model)
    elif model_cfg["init"] != "torch":
        raise ValueError(f"model.init must be glorot or torch (got {model_cfg['init']!r})")
    return model


def build_optimizer(parameters: Iterable[torch.nn.Parameter], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Adam or RMSprop with the config's settings."""
    optim = cfg["optim"]
    parameters = list(parameters)
    if optim["name"] == "adam":
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
    if optim["name"] == "rmsprop":
        return torch.optim.RMSprop(
            parameters, lr=optim["lr"], alpha=optim["alpha"], eps=optim["eps"], weight_decay=optim["weight_decay"]
        )
    raise ValueError(f"optim.name must be adam or rmsprop (got {optim['name']!r})")


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

"""Builders: the one place that turns a config into objects (data, model, optimizer).

Each kind's options are a `vae.registry.Registry` here (DATASETS, MODELS, OPTIMIZERS): another option
is one more `@REGISTRY.register(name)` builder, and the config accepts its name.

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
    StoredData,
    hold_out,
    load_celeba,
    load_cifar10,
    load_idx,
    load_image_folder,
    make_splits,
    make_synthetic,
)
from vae.hvae import hvae
from vae.likelihoods import build_likelihood
from vae.model import VAE, conv_vae, init_glorot, mlp_vae
from vae.registry import Registry
from vae.resnet import resnet_vae
from vae.schedules import lr_factor, lr_scheduler, stage_steps

# data.name -> builder(data_cfg) -> (train, test, num_val, class_names, val_source): the two stored
# splits, how many images validation takes, the class names and where validation comes from; or a
# vae.data.StoredData of the same five, which may add the data set's own validation split (val_source
# official) and its attribute names (celeba).
DATASETS = Registry("data.name")


def _downloadable(name: str, data: Mapping[str, Any], load: Callable[..., tuple]) -> tuple:
    if data["root"] is None:
        raise DataNotFoundError(f"{name}: data.root is not set")
    train, test = load(data["root"], download=data["download"])
    return train, test, data["val_split"], CLASS_NAMES[name], data["val_source"]


def _torchvision(name: str) -> Callable[[Mapping[str, Any]], tuple]:
    def build(data: Mapping[str, Any]) -> tuple:
        return _downloadable(name, data, load=lambda root, download: load_idx(name, root, download=download))

    return build


for _name in TORCHVISION_FOLDERS:  # mnist, fashion_mnist: the IDX files torchvision's folders hold
    DATASETS.register(_name)(_torchvision(_name))


@DATASETS.register("cifar10")
def _cifar10(data: Mapping[str, Any]) -> tuple:
    return _downloadable("cifar10", data, load=load_cifar10)


def _image_cache(data: Mapping[str, Any]):
    """The decode cache's folder (vae.image_cache), or None for data.cache=false; runs saved before
    data.cache existed decoded every launch."""
    from vae.image_cache import cache_folder

    return cache_folder(data.get("cache_dir")) if data.get("cache", False) else None


@DATASETS.register("folder")
def _folder(data: Mapping[str, Any]) -> tuple:
    everything, class_names, _ = load_image_folder(
        data["path"],
        image_size=data["image_size"],
        channels=data["channels"],
        skip_bad=data["skip_bad"],
        cache=_image_cache(data),
    )
    num_val = max(1, round(data["val_fraction"] * len(everything)))
    train, test = hold_out(everything, num_val, seed=data["split_seed"])  # a folder has no test split
    return train, test, num_val, class_names, "test"  # the held-out part serves as validation and test


@DATASETS.register("celeba")
def _celeba(data: Mapping[str, Any]) -> StoredData:
    if data["root"] is None:
        raise DataNotFoundError("celeba: data.root is not set")
    splits, attribute_names = load_celeba(
        data["root"],
        image_size=data["image_size"],
        crop=data["crop"],
        channels=data["channels"],
        download=data["download"],
        cache=_image_cache(data),
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


@DATASETS.register("synthetic")
def _synthetic(data: Mapping[str, Any]) -> tuple:
    image_shape, num_classes, split_seed = tuple(data["image_shape"]), data["num_classes"], data["split_seed"]
    train = make_synthetic(
        data["num_train"] + data["num_val"], image_shape=image_shape, num_classes=num_classes, seed=split_seed
    )
    test = make_synthetic(data["num_test"], image_shape=image_shape, num_classes=num_classes, seed=split_seed + 1)
    return train, test, data["num_val"], CLASS_NAMES["synthetic"], data["val_source"]


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


# model.name -> builder(model_cfg, *, image_shape, latent_dim) -> the model (see vae.model.VAE for what
# it provides). Another model is one more entry (the config accepts every name in it).
MODELS = Registry("model.name")


@MODELS.register("conv")
def _conv(model_cfg: Mapping[str, Any], *, image_shape: tuple[int, int, int], latent_dim: int) -> VAE:
    return conv_vae(
        image_shape=image_shape,
        latent_dim=latent_dim,
        channels=tuple(model_cfg["channels"]),
        hidden_dim=model_cfg["hidden_dim"],
    )


@MODELS.register("mlp")
def _mlp(model_cfg: Mapping[str, Any], *, image_shape: tuple[int, int, int], latent_dim: int) -> VAE:
    return mlp_vae(
        image_shape=image_shape,
        latent_dim=latent_dim,
        hidden_dims=tuple(model_cfg["hidden_dims"]),
        activation=model_cfg.get("activation", "relu"),  # runs saved before the key existed used ReLU
    )


def _residual_keys(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The keys the residual conv stages of vae/resnet.py take, shared by model=resnet and model=hvae."""
    return {
        "channels": tuple(model_cfg["channels"]),
        "blocks": model_cfg["blocks"],
        "hidden_dim": model_cfg["hidden_dim"],
        "activation": model_cfg["activation"],
    }


@MODELS.register("resnet")
def _resnet(model_cfg: Mapping[str, Any], *, image_shape: tuple[int, int, int], latent_dim: int) -> VAE:
    return resnet_vae(image_shape=image_shape, latent_dim=latent_dim, **_residual_keys(model_cfg))


@MODELS.register("hvae")
def _hvae(model_cfg: Mapping[str, Any], *, image_shape: tuple[int, int, int], latent_dim: int):
    lower = tuple(model_cfg["lower_latent_dims"])
    return hvae(image_shape=image_shape, latent_dim=latent_dim, lower_latent_dims=lower, **_residual_keys(model_cfg))


def build_model(cfg: Mapping[str, Any]) -> VAE:
    """The VAE the config's model group names, for the data's image shape, initialised as it says, with
    its likelihood (`model.likelihood`, from gen_loss and decoder_sigma)."""
    model_cfg, image_shape, latent_dim = cfg["model"], tuple(cfg["data"]["image_shape"]), cfg["latent_dim"]
    model = MODELS.get(model_cfg["name"])(model_cfg, image_shape=image_shape, latent_dim=latent_dim)
    if model_cfg["init"] == "glorot":
        init_glorot(model)
    elif model_cfg["init"] != "torch":
        raise ValueError(f"model.init must be glorot or torch (got {model_cfg['init']!r})")
    # p(x|z): Bernoulli, or the Gaussian of gen_loss=gaussian, whose sigma (learned: a parameter) lives in
    # the model, so that the optimizer trains it and checkpoints keep it (vae.likelihoods).
    model.likelihood = build_likelihood(cfg)
    return model


# optim.name -> builder(parameters (a list), optim_cfg) -> the optimizer.
OPTIMIZERS = Registry("optim.name")


@OPTIMIZERS.register("adam")
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


@OPTIMIZERS.register("rmsprop")
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

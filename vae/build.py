"""Builders: the one place that turns a config into objects (data, model, optimizer).

Each kind's options are a `vae.registry.Registry` here (DATASETS, MODELS, OPTIMIZERS): another option
is one more `@REGISTRY.register(name, schema=...)` builder, with its schema (the dataclass of its keys,
a subclass of the group's base in vae/schema.py, and its `check`) just above it; the config accepts its
name, types its keys and checks their values with nothing else edited.

Library code never looks at the config; these functions read it and call the library with
every value spelled out, so no default is repeated outside the config.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from omegaconf import MISSING

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
from vae.errors import ConfigError
from vae.hvae import hvae
from vae.likelihoods import build_likelihood
from vae.model import ACTIVATIONS, VAE, conv_vae, init_glorot, mlp_vae
from vae.registry import Registry
from vae.resnet import resnet_vae
from vae.schedules import lr_factor, lr_scheduler, stage_steps
from vae.schema import (
    DataConfig,
    Get,
    ModelConfig,
    OptimConfig,
    check,
    check_at_least,
    check_choice,
    likelihood_group,
    positive_ints,
)

# data.name -> builder(data_cfg) -> (train, test, num_val, class_names, val_source): the two stored
# splits, how many images validation takes, the class names and where validation comes from; or a
# vae.data.StoredData of the same five, which may add the data set's own validation split (val_source
# official) and its attribute names (celeba).
DATASETS = Registry("data.name")


@dataclass
class DownloadableDataConfig(DataConfig):
    """A published data set (MNIST, Fashion-MNIST, CIFAR-10): files under `root`, downloaded when missing."""

    root: str | None = "${oc.env:VAE_DATA_DIR,./data}"
    download: bool = True
    val_split: int = 5000  # images of the training split held out for validation

    @classmethod
    def check(cls, get: Get) -> None:
        super().check(get)
        check_at_least(get, 1, "data.val_split")
        check(get("data.root") not in (None, ""), "data.root", "a folder (or set VAE_DATA_DIR)", get("data.root"))


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
    DATASETS.register(_name, schema=DownloadableDataConfig)(_torchvision(_name))


@DATASETS.register("cifar10", schema=DownloadableDataConfig)
def _cifar10(data: Mapping[str, Any]) -> tuple:
    return _downloadable("cifar10", data, load=load_cifar10)


def _image_cache(data: Mapping[str, Any]):
    """The decode cache's folder (vae.image_cache), or None for data.cache=false; runs saved before
    data.cache existed decoded every launch."""
    from vae.image_cache import cache_folder

    return cache_folder(data.get("cache_dir")) if data.get("cache", False) else None


@dataclass
class DecodedDataConfig(DataConfig):
    """Data sets decoded from image files (folder, celeba): the decoded images are cached (vae/image_cache.py)."""

    cache: bool = True  # save the decoded uint8 images once and read them back next launch (false: decode every launch)
    cache_dir: str | None = None  # null: $VAE_CACHE_DIR, else $XDG_CACHE_HOME/vae, else ~/.cache/vae


@dataclass
class FolderDataConfig(DecodedDataConfig):
    """Any folder of images; a share of it is held out for validation and evaluation."""

    path: str = MISSING
    image_size: int = MISSING
    channels: int = MISSING
    val_fraction: float = MISSING
    skip_bad: bool = False  # skip unreadable files (counted) instead of stopping

    @classmethod
    def check(cls, get: Get) -> None:
        check_at_least(get, 1, "data.image_size")  # before the base's image_shape, made of it
        super().check(get)
        check(get("data.path") not in (None, ""), "data.path", "a folder of images", get("data.path"))
        fraction = get("data.val_fraction")
        check(0 < fraction < 1, "data.val_fraction", "a number between 0 and 1", fraction)
        shape = get("data.image_shape")
        check(
            shape[1] == shape[2] == get("data.image_size"),
            "data.image_size",
            f"the side of data.image_shape {shape}",
            get("data.image_size"),
        )


@DATASETS.register("folder", schema=FolderDataConfig)
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


def check_channels(get: Get, *, min_length: int) -> None:
    check(
        positive_ints(get("model.channels"), min_length=min_length),
        "model.channels",
        f"a list of at least {min_length} positive integers",
        get("model.channels"),
    )


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


def _residual_keys(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
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
        image_shape=image_shape, latent_dim=latent_dim, output_channels=output_channels, **_residual_keys(model_cfg)
    )


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
        **_residual_keys(model_cfg),
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

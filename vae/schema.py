"""The schema every option of a group shares (typed dataclasses for Hydra's ConfigStore), with its checks.

Each group (data, model, optim, objective, gen_loss, prior) has a base dataclass here: the keys every option of it has,
with their defaults, and `check(get)`, the range checks of those keys that types cannot express. An
option's own schema subclasses it beside the option's builder (e.g. `ResNetModelConfig` beside
`@MODELS.register("resnet", schema=ResNetModelConfig)` in vae/models/resnet.py) and adds its keys and checks,
calling `super().check(get)`. `vae.config.validate` calls the chosen option's check through its
registry: no validation code names an option.

`get(key)` reads a dotted key of the resolved config (`MISSING` when absent); a check raises
`ConfigError` naming the key, what it must be and the value it got.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING

from vae.errors import ConfigError

Get = Callable[[str], Any]


def check(condition: bool, key: str, expectation: str, value: object) -> None:
    """Raise ConfigError "`key` must be `expectation` (got `value`)" unless `condition`."""
    if not condition:
        raise ConfigError(f"{key} must be {expectation} (got {value!r})")


def check_choice(get: Get, key: str, choices) -> None:
    check(get(key) in choices, key, "one of " + ", ".join(choices), get(key))


def check_at_least(get: Get, bound: int, *keys: str) -> None:
    for key in keys:
        check(get(key) >= bound, key, f"an integer >= {bound}", get(key))


def positive_ints(value: object, *, min_length: int = 0) -> bool:
    return isinstance(value, list) and len(value) >= min_length and all(isinstance(v, int) and v >= 1 for v in value)


def is_stage(stage: object) -> bool:
    return (
        isinstance(stage, list)
        and len(stage) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in stage)
    )


@dataclass
class DataConfig:
    """Keys of every data set."""

    # Whether the data set has a validation split of its own (data.val_source=official, CelebA's).
    official_val: ClassVar[bool] = False

    name: str = MISSING
    image_shape: list[int] = MISSING  # [channels, height, width]
    num_classes: int = MISSING
    root: str | None = None  # where the files are looked for (data sets read from disk)
    download: bool = False  # download the files when they are missing
    val_source: str = "holdout"  # holdout (part of train) | test (the test split, as the lecture did) | official
    split_seed: int = 0  # fixes which training images are held out, whatever the run's seed
    # none (gray levels) | dynamic (a fresh draw per batch, as Burda et al.) | static (this project's
    # own single draw: not Larochelle & Murray's fixed "static MNIST" files, so not comparable with it)
    binarize: str = "none"

    @classmethod
    def check(cls, get: Get) -> None:
        check_choice(get, "data.val_source", ("holdout", "test", "official"))
        check_choice(get, "data.binarize", ("none", "dynamic", "static"))
        shape = get("data.image_shape")
        check(
            positive_ints(shape) and len(shape) == 3,
            "data.image_shape",
            "[channels, height, width] of positive integers",
            shape,
        )
        check(
            (get("data.val_source") == "official") == cls.official_val,
            "data.val_source",
            "official (its own validation partition)" if cls.official_val else "holdout or test",
            get("data.val_source"),
        )


@dataclass
class ModelConfig:
    name: str = MISSING
    init: str = "glorot"  # glorot (Keras' default, trains) | torch (PyTorch's default)
    # init (the decoder's last bias as model.init leaves it) | data_mean (the logit of the training
    # pixel means clipped to [1e-3, 1 - 1e-3], Burda et al.'s start)
    output_bias: str = "init"

    @classmethod
    def check(cls, get: Get) -> None:
        check_choice(get, "model.init", ("glorot", "torch"))
        check_choice(get, "model.output_bias", ("init", "data_mean"))


@dataclass
class OptimConfig:
    name: str = MISSING
    lr: float = MISSING  # the base (peak) learning rate
    eps: float = MISSING
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | linear (decay to lr_floor over the run) | step (stages)
    warmup_steps: int = 0  # lr rises linearly from lr / warmup_steps to lr over these first steps
    # The warm-up lasts at most this many epochs (0 = no bound): a short run on a small data set
    # is not spent warming up. MNIST at batch 128 (430 steps per epoch) keeps Adam's 200 steps.
    max_warmup_epochs: float = 0.5
    lr_floor: float = 0.0  # where cosine and linear end, at the run's last step
    stages: list[Any] = field(default_factory=list)  # schedule=step: [[epochs, lr], ...] in order
    stage_divisor: float = 1.0  # every stage's epochs divided by this (a compressed published schedule)

    @classmethod
    def check(cls, get: Get) -> None:
        for key, expectation in (
            ("optim.weight_decay", "a number >= 0"),
            ("optim.warmup_steps", "an integer >= 0"),
            ("optim.max_warmup_epochs", "a number >= 0 (0 = no bound)"),
            ("optim.lr_floor", "a number >= 0"),
        ):
            check(get(key) >= 0, key, expectation, get(key))
        check(get("optim.lr") > 0, "optim.lr", "a number > 0", get("optim.lr"))
        check(
            get("optim.lr_floor") <= get("optim.lr"),
            "optim.lr_floor",
            f"at most optim.lr ({get('optim.lr')})",
            get("optim.lr_floor"),
        )
        stages = get("optim.stages")
        check(
            isinstance(stages, list) and all(is_stage(stage) for stage in stages),
            "optim.stages",
            "a list of [epochs, lr] pairs of positive numbers",
            stages,
        )
        check(get("optim.stage_divisor") > 0, "optim.stage_divisor", "a number > 0", get("optim.stage_divisor"))


@dataclass
class ObjectiveConfig:
    """What training maximises: elbo (kl_weight-weighted, the default) or iwae (Burda et al.'s bound)."""

    name: str = MISSING

    @classmethod
    def check(cls, get: Get) -> None:
        """The ELBO weighs its terms as the top-level keys say: nothing more to check."""


@dataclass
class LikelihoodConfig:
    """The decoder's likelihood p(x|z) (`gen_loss=`, vae.likelihoods): bce, l2, gaussian, dmol, ..."""

    name: str = MISSING

    @classmethod
    def check(cls, get: Get) -> None:
        """A likelihood without keys of its own: nothing more to check."""


def likelihood_group(value: object) -> dict:
    """The `gen_loss` group of a config: a run saved before gen_loss was a group holds its name as a string
    ("bce"), one saved before the key existed nothing (bce)."""
    if value is None or value is MISSING:
        return {"name": "bce"}
    if isinstance(value, str):
        return {"name": value}
    return dict(value)


@dataclass
class PriorConfig:
    """The top layer's prior p(z) (`prior=`, vae.priors): standard, vamp, ..."""

    name: str = MISSING

    @classmethod
    def check(cls, get: Get) -> None:
        """A prior without keys of its own: nothing more to check."""


def prior_group(value: object) -> dict:
    """The `prior` group of a config; a run saved before the group existed had N(0, I)."""
    if value is None or value is MISSING:
        return {"name": "standard"}
    return dict(value)


# The base schema of each group: the defaults every option of it shares.
GROUP_SCHEMAS = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "objective": ObjectiveConfig,
    "gen_loss": LikelihoodConfig,
    "prior": PriorConfig,
}

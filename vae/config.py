"""The config's schema (typed dataclasses in Hydra's ConfigStore) and the range checks types cannot express.

Where each default lives: a value that every option of a group shares is written here, in the
schema; everything an option chooses (and every top-level default) is written in its YAML file
under conf/. No default is written in both. `python -m vae.train --cfg job` prints them all.

The schema makes Hydra refuse, naming the key, an unknown key, an unknown group option and a
value of the wrong type; `validate` refuses a value of the right type that cannot work, also by
name, before any data is loaded.
"""

from __future__ import annotations

import copy
import hashlib
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

# The top-level keys and the groups. Values: conf/config.yaml and conf/<group>/<option>.yaml.


@dataclass
class DataConfig:
    """Keys of every data set."""

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


@dataclass
class DownloadableDataConfig(DataConfig):
    """A published data set (MNIST, Fashion-MNIST, CIFAR-10): files under `root`, downloaded when missing."""

    root: str | None = "${oc.env:VAE_DATA_DIR,./data}"
    download: bool = True
    val_split: int = 5000  # images of the training split held out for validation


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


@dataclass
class CelebADataConfig(DecodedDataConfig):
    """CelebA's aligned images in torchvision's layout under root/celeba, centre-cropped and resized."""

    image_size: int = MISSING
    crop: int = MISSING  # the centred crop x crop square taken before resizing
    channels: int = MISSING


@dataclass
class SyntheticDataConfig(DataConfig):
    """Images drawn in memory, for tests and for trying the code offline."""

    num_train: int = MISSING
    num_val: int = MISSING
    num_test: int = MISSING


@dataclass
class ModelConfig:
    name: str = MISSING
    init: str = "glorot"  # glorot (Keras' default, trains) | torch (PyTorch's default)
    # init (the decoder's last bias as model.init leaves it) | data_mean (the logit of the training
    # pixel means clipped to [1e-3, 1 - 1e-3], Burda et al.'s start)
    output_bias: str = "init"


@dataclass
class ConvModelConfig(ModelConfig):
    channels: list[int] = MISSING  # encoder convs; the second one has stride 2
    hidden_dim: int = MISSING  # the dense layer before the mu / log_var heads, and after z


@dataclass
class MLPModelConfig(ModelConfig):
    hidden_dims: list[int] = MISSING
    activation: str = MISSING  # relu | tanh | silu | elu


@dataclass
class ResNetModelConfig(ModelConfig):
    channels: list[int] = MISSING  # one stage per entry: a stride-2 conv to this width, then `blocks` residual blocks
    blocks: int = MISSING  # residual blocks per stage
    hidden_dim: int = MISSING  # the dense layer between the feature map and the latent
    activation: str = MISSING  # silu | relu | elu | tanh


@dataclass
class HVAEModelConfig(ResNetModelConfig):
    lower_latent_dims: list[int] = MISSING  # the stochastic layers under the top one (latent_dim), from x up


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


@dataclass
class AdamConfig(OptimConfig):
    betas: list[float] = MISSING


@dataclass
class RMSpropConfig(OptimConfig):
    alpha: float = MISSING


@dataclass
class ObjectiveConfig:
    """What training maximises: elbo (kl_weight-weighted, the default) or iwae (Burda et al.'s bound)."""

    name: str = MISSING


@dataclass
class IWAEObjectiveConfig(ObjectiveConfig):
    k: int = MISSING  # importance samples per image
    estimator: str = MISSING  # iwae (the bound's plain gradient) | dreg (Tucker et al.'s doubly reparameterized)


@dataclass
class Config:
    """The top-level keys; their values (and comments) are in conf/config.yaml."""

    latent_dim: int = MISSING
    kl_weight: float = MISSING
    gen_loss: str = MISSING
    decoder_sigma: Any = "learned"  # gen_loss=gaussian: learned | optimal | a number > 0 (vae.likelihoods)
    reduction: str = MISSING
    kl_warmup_epochs: float = MISSING
    free_bits: float = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    seed: int = MISSING
    device: str = MISSING
    deterministic: bool = MISSING
    precision: str = MISSING
    compile: Any = MISSING  # auto | true | false
    channels_last: Any = MISSING  # auto | true | false
    threads: int = MISSING
    log_every: int = MISSING
    eval_batch_size: int = MISSING
    num_image_samples: int = MISSING
    grid_size: int = MISSING
    checkpoint_every_steps: int = MISSING
    snapshot_every_epochs: int = MISSING
    quality_every_epochs: int = MISSING
    quality_n: int = MISSING
    quality_features: str | None = MISSING
    on_nan: str = MISSING
    resume: str | None = MISSING
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    optim: OptimConfig = MISSING
    objective: ObjectiveConfig = MISSING


SCHEMAS = {
    ("schema", "config"): Config,
    ("schema/data", "downloadable"): DownloadableDataConfig,
    ("schema/data", "folder"): FolderDataConfig,
    ("schema/data", "celeba"): CelebADataConfig,
    ("schema/data", "synthetic"): SyntheticDataConfig,
    ("schema/model", "conv"): ConvModelConfig,
    ("schema/model", "mlp"): MLPModelConfig,
    ("schema/model", "resnet"): ResNetModelConfig,
    ("schema/model", "hvae"): HVAEModelConfig,
    ("schema/optim", "adam"): AdamConfig,
    ("schema/optim", "rmsprop"): RMSpropConfig,
    ("schema/objective", "elbo"): ObjectiveConfig,
    ("schema/objective", "iwae"): IWAEObjectiveConfig,
}


def stage_epochs(stages: Sequence[Sequence[float]], divisor: float) -> int:
    """The epochs a stepwise schedule runs: its stages' epochs summed, divided by `divisor`, rounded up."""
    return math.ceil(sum(float(epochs) for epochs, _ in stages) / float(divisor) - 1e-9)


def register_resolvers() -> None:
    """The config's own interpolations, for reading a saved `.hydra/config.yaml` outside Hydra."""
    OmegaConf.register_new_resolver("vae.stage_epochs", stage_epochs, replace=True)


def register_configs() -> None:
    """Put the schema into Hydra's ConfigStore, where conf/*.yaml finds it in its defaults lists.

    Also registers `${vae.stage_epochs:<stages>,<divisor>}`, the epochs of a stepwise schedule.
    """
    from hydra.core.config_store import ConfigStore

    register_resolvers()
    store = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        store.store(group=group, name=name, node=node)


def config_dir() -> Path:
    """conf/ shipped inside the installed package, else the repository's own (editable installs)."""
    packaged = Path(__file__).resolve().parent / "conf"
    if (packaged / "config.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "conf"


def option_summaries() -> dict[str, dict[str, str]]:
    """Every group a user chooses from, with each option's one-line summary: {group: {option: summary}}.

    Read from conf/ itself (a `# summary: ...` line at the top of each option's YAML file), so a
    new option's file is all it takes to be listed. The schema's groups are internal and not listed.
    """
    groups: dict[str, dict[str, str]] = {}
    root = config_dir()
    for path in sorted(root.rglob("*.yaml")):
        group = path.parent.relative_to(root).as_posix()
        if group == ".":
            continue
        summary = next(
            (
                line[len("# summary:") :].strip()
                for line in path.read_text().splitlines()
                if line.startswith("# summary:")
            ),
            "",
        )
        groups.setdefault(group, {})[path.stem] = summary
    return groups


def help_text() -> str:
    """`python -m vae.train --help`: the groups to choose from, with what each option is, and how to see the rest."""
    lines = [
        "python -m vae.train [group=option ...] [key=value ...]   train a VAE (a run in outputs/runs/<timestamp>/)",
        "python -m vae.train -m key=a,b ...                       a sweep (outputs/multirun/<timestamp>/<job>/)",
        "python -m vae.train resume=<run dir>|latest [epochs=N]  continue a stopped run, or extend a finished one",
        "",
        "Groups (group=option):",
    ]
    for group, options in option_summaries().items():
        lines.append(f"  {group}:")
        lines += [f"    {option:<16} {summary}" for option, summary in options.items()]
    defaults = compose_dict()
    keys = ["latent_dim", "kl_weight", "gen_loss", "reduction", "epochs", "batch_size", "seed", "device"]
    described = [
        f"{key}={defaults[key]}" + (f" ({' | '.join(CHOICES[key])})" if key in CHOICES else "") for key in keys
    ]
    lines += [
        "  hydra/launcher=joblib runs a sweep's jobs side by side (hydra.launcher.n_jobs=N)",
        "",
        "Keys (key=value), the most used at their defaults:",
        *textwrap.wrap(", ".join(described), width=100, initial_indent="  ", subsequent_indent="  "),
        "  data.root=<dir> (else the environment variable VAE_DATA_DIR, else ./data)",
        "Every key with its value, as a run would get it:",
        "  python -m vae.train --cfg job",
        "  python -m vae.train experiment=lecture --cfg job",
        "Hydra's own flags: python -m vae.train --hydra-help",
    ]
    return "\n".join(lines)


def _conf_signature(root: Path) -> str:
    """A digest of every file of conf/, names and contents: a composed config is stale once this changes."""
    digest = hashlib.sha1()
    for path in sorted(root.rglob("*.yaml")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# Hydra takes about 0.2 s to compose a config (its defaults tree, then one merge per file); a
# process that composes the same overrides again (a test suite, an experiment script) gets a copy.
_COMPOSED: dict[tuple, DictConfig] = {}


def compose(overrides: Sequence[str] = ()) -> DictConfig:
    """The config `python -m vae.train <overrides>` would train with, composed in-process (notebooks, tests, experiments).

    The same overrides composed again return a fresh copy of the first result, for as long as no
    file of conf/ changes (an edited YAML file is read again).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    root = config_dir()
    key = (str(root), tuple(overrides), _conf_signature(root))
    if key not in _COMPOSED:
        register_configs()
        with initialize_config_dir(config_dir=str(root), version_base="1.3"):
            _COMPOSED[key] = hydra_compose(config_name="config", overrides=list(overrides))
    return copy.deepcopy(_COMPOSED[key])


def compose_dict(overrides: Sequence[str] = ()) -> dict:
    """`compose`, resolved into the plain dict the builders take."""
    return OmegaConf.to_container(compose(overrides), resolve=True)


# The base schema of each group: the defaults every option of it shares.
GROUP_SCHEMAS = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "objective": ObjectiveConfig}


# Group keys added since runs were first saved, with the value that reproduces what such a run did
# (where it differs from today's default): a run saved before optim.max_warmup_epochs had no bound.
ADDED_SINCE = {"optim": {"max_warmup_epochs": 0.0}}


def with_shared_defaults(config: dict) -> dict:
    """A saved run's config with the group keys added since it was written, at the values it ran with."""
    filled = dict(config)
    for group, schema in GROUP_SCHEMAS.items():
        shared = OmegaConf.to_container(OmegaConf.structured(schema))
        shared = {key: value for key, value in shared.items() if value != MISSING}
        # A group added since the run was written (objective) is the default it had then.
        saved = config.get(group, {"name": "elbo"} if group == "objective" else {})
        filled[group] = {**shared, **(ADDED_SINCE.get(group, {}) if group in config else {}), **saved}
    return filled


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


# Values of the right type that cannot work: (key, test, what it must be). The keys that name an
# option to build (data.name, model.name, objective.name, optim.name, optim.schedule) are checked
# against its registry instead (`registries`), so their choices are what can be built.
CHOICES = {
    "gen_loss": ("bce", "l2", "gaussian"),
    "reduction": ("mean", "sum"),
    "precision": ("auto", "fp32", "bf16"),
    "on_nan": ("stop", "skip"),
    "data.val_source": ("holdout", "test", "official"),
    "data.binarize": ("none", "dynamic", "static"),
    "model.init": ("glorot", "torch"),
    "model.output_bias": ("init", "data_mean"),
}
AT_LEAST_ONE = (
    "latent_dim",
    "quality_n",
    "epochs",
    "batch_size",
    "log_every",
    "eval_batch_size",
    "num_image_samples",
    "grid_size",
    "data.val_split",
    "data.num_train",
    "data.num_val",
    "data.num_test",
    "data.image_size",
    "data.crop",
    "model.hidden_dim",
    "objective.k",
)
CELEBA_WIDTH = 178  # CelebA's aligned images are 178 x 218: data.crop fits in them
# Keys only some options of a group have: checked when present.
OPTION_CHOICES = {
    "model.activation": ("relu", "tanh", "silu", "elu"),  # vae.model.ACTIVATIONS
    "objective.estimator": ("iwae", "dreg"),
}
# What objective=iwae needs: the importance-weighted bound is a bound on the true likelihood only.
IWAE_NEEDS = {"gen_loss": "bce", "reduction": "sum", "kl_weight": 1.0, "free_bits": 0.0, "kl_warmup_epochs": 0.0}
AT_LEAST_ZERO = {
    "kl_weight": "a number >= 0",
    "kl_warmup_epochs": "a number >= 0",
    "free_bits": "a number >= 0 (nats per latent dim)",
    "seed": "an integer >= 0",
    "threads": "an integer >= 0 (0 = auto)",
    "checkpoint_every_steps": "an integer >= 0",
    "snapshot_every_epochs": "an integer >= 0",
    "quality_every_epochs": "an integer >= 0 (0 = off)",
    "optim.weight_decay": "a number >= 0",
    "optim.warmup_steps": "an integer >= 0",
    "optim.max_warmup_epochs": "a number >= 0 (0 = no bound)",
    "optim.lr_floor": "a number >= 0",
}


def registries() -> dict:
    """The config keys that name an option, each with the registry of its builders (vae.registry.Registry)."""
    from vae.build import DATASETS, MODELS, OPTIMIZERS
    from vae.objectives import OBJECTIVES
    from vae.schedules import SCHEDULES

    return {
        "data.name": DATASETS,
        "model.name": MODELS,
        "objective.name": OBJECTIVES,
        "optim.name": OPTIMIZERS,
        "optim.schedule": SCHEDULES,
    }


def _check(condition: bool, key: str, expectation: str, value: object) -> None:
    if not condition:
        raise ConfigError(f"{key} must be {expectation} (got {value!r})")


def _is_bool_or_auto(value: object) -> bool:
    return isinstance(value, bool) or value == "auto"


def _is_stage(stage: object) -> bool:
    return (
        isinstance(stage, list)
        and len(stage) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in stage)
    )


def _positive_ints(value: object, *, min_length: int = 0) -> bool:
    return isinstance(value, list) and len(value) >= min_length and all(isinstance(v, int) and v >= 1 for v in value)


def _validate_optim(get) -> None:
    """The optimizer's and the schedule's values that types cannot check."""
    _check(get("optim.lr") > 0, "optim.lr", "a number > 0", get("optim.lr"))
    _check(
        get("optim.lr_floor") <= get("optim.lr"),
        "optim.lr_floor",
        f"at most optim.lr ({get('optim.lr')})",
        get("optim.lr_floor"),
    )
    stages = get("optim.stages")
    _check(
        isinstance(stages, list) and all(_is_stage(stage) for stage in stages),
        "optim.stages",
        "a list of [epochs, lr] pairs of positive numbers",
        stages,
    )
    if get("optim.schedule") == "step":
        _check(bool(stages), "optim.stages", "a non-empty list of [epochs, lr] with optim.schedule=step", stages)
    _check(get("optim.stage_divisor") > 0, "optim.stage_divisor", "a number > 0", get("optim.stage_divisor"))


def _validate_objective(get) -> None:
    """objective=iwae trains a bound on log p(x): refused, naming the keys, with any other weighting of the terms."""
    if get("objective.name") != "iwae":
        return
    wrong = [f"{key}={get(key)}" for key, needed in IWAE_NEEDS.items() if get(key) != needed]
    if wrong:
        needs = " ".join(
            f"{key}={needed:g}" if isinstance(needed, float) else f"{key}={needed}"
            for key, needed in IWAE_NEEDS.items()
        )
        raise ConfigError(
            f"objective=iwae is the importance-weighted bound on the true likelihood and needs {needs}; "
            f"got {', '.join(wrong)}"
        )


def _numbers(node: Any, prefix: str = ""):
    """(dotted key, value) of every float in a resolved config, lists included (`optim.stages.0.1`)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, float):
            yield name, value
        elif isinstance(value, dict | list):
            yield from _numbers(value, name + ".")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first key whose value cannot work."""
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as error:  # an interpolation or a missing value: say which
        raise ConfigError(f"config does not resolve: {error}") from None

    def get(key: str) -> Any:
        node = resolved
        for part in key.split("."):
            node = node.get(part, MISSING) if isinstance(node, dict) else MISSING
        return node

    def present(key: str) -> bool:
        return get(key) is not MISSING

    for key, value in _numbers(resolved):  # inf or nan cannot work anywhere (a learning rate, a KL weight, ...)
        _check(math.isfinite(value), key, "a finite number", value)
    for key, choices in CHOICES.items():
        _check(get(key) in choices, key, "one of " + ", ".join(choices), get(key))
    for key, registry in registries().items():  # refused naming the key and the registered names
        registry.get(get(key))
    for key, choices in OPTION_CHOICES.items():
        if present(key):
            _check(get(key) in choices, key, "one of " + ", ".join(choices), get(key))
    for key in filter(present, AT_LEAST_ONE):
        _check(get(key) >= 1, key, "an integer >= 1", get(key))
    for key, expectation in AT_LEAST_ZERO.items():
        _check(get(key) >= 0, key, expectation, get(key))
    device = str(get("device"))
    _check(
        device in ("auto", "cpu", "cuda") or device.startswith("cuda:"),
        "device",
        "one of auto, cpu, cuda, cuda:N",
        device,
    )
    for key in ("compile", "channels_last"):
        _check(_is_bool_or_auto(get(key)), key, "auto, true or false", get(key))
    _validate_optim(get)
    _validate_objective(get)
    sigma = get("decoder_sigma")
    _check(
        sigma in ("learned", "optimal")
        or (isinstance(sigma, int | float) and not isinstance(sigma, bool) and sigma > 0),
        "decoder_sigma",
        "learned, optimal or a number > 0",
        sigma,
    )
    shape = get("data.image_shape")
    _check(
        _positive_ints(shape) and len(shape) == 3,
        "data.image_shape",
        "[channels, height, width] of positive integers",
        shape,
    )
    if get("data.name") == "folder":
        _check(get("data.path") not in (None, ""), "data.path", "a folder of images", get("data.path"))
        fraction = get("data.val_fraction")
        _check(0 < fraction < 1, "data.val_fraction", "a number between 0 and 1", fraction)
        _check(
            shape[1] == shape[2] == get("data.image_size"),
            "data.image_size",
            f"the side of data.image_shape {shape}",
            get("data.image_size"),
        )
    elif get("data.name") == "celeba":
        _check(
            get("data.root") not in (None, ""),
            "data.root",
            "a folder holding celeba/ (or set VAE_DATA_DIR)",
            get("data.root"),
        )
        size, crop, channels = get("data.image_size"), get("data.crop"), get("data.channels")
        _check(crop >= size, "data.crop", f"at least data.image_size ({size})", crop)
        _check(crop <= CELEBA_WIDTH, "data.crop", f"at most {CELEBA_WIDTH} (the aligned images are 178 x 218)", crop)
        _check(channels in (1, 3), "data.channels", "1 (gray) or 3 (RGB)", channels)
        _check(shape == [channels, size, size], "data.image_shape", f"[{channels}, {size}, {size}]", shape)
    elif present("data.val_split"):
        _check(get("data.root") not in (None, ""), "data.root", "a folder (or set VAE_DATA_DIR)", get("data.root"))
    official = get("data.name") == "celeba"  # the data sets with a validation split of their own
    _check(
        (get("data.val_source") == "official") == official,
        "data.val_source",
        "official (CelebA's own validation partition)" if official else "holdout or test",
        get("data.val_source"),
    )
    if present("model.channels"):
        stages = 2 if get("model.name") == "conv" else 1  # the lecture's net strides in its second conv
        _check(
            _positive_ints(get("model.channels"), min_length=stages),
            "model.channels",
            f"a list of at least {stages} positive integers",
            get("model.channels"),
        )
    if present("model.blocks"):
        _check(
            isinstance(get("model.blocks"), int) and get("model.blocks") >= 0,
            "model.blocks",
            "an integer >= 0",
            get("model.blocks"),
        )
    if present("model.lower_latent_dims"):
        _check(
            _positive_ints(get("model.lower_latent_dims"), min_length=1),
            "model.lower_latent_dims",
            "a list of at least 1 positive integer (the layers under the top one, from x up)",
            get("model.lower_latent_dims"),
        )
    if present("model.hidden_dims"):
        _check(
            _positive_ints(get("model.hidden_dims")),
            "model.hidden_dims",
            "a list of positive integers",
            get("model.hidden_dims"),
        )

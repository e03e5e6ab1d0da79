"""The config: its top-level schema, Hydra's schema store derived from the registries, and validation.

Where each default lives: a value that every option of a group shares is written in the group's base
schema (vae/schema.py), a value an option's keys share in the option's schema (beside its builder);
everything an option chooses (and every top-level default) is written in its YAML file under conf/.
No default is written in both. `python -m vae.train --cfg job` prints them all.

The schema makes Hydra refuse, naming the key, an unknown key, an unknown group option and a
value of the wrong type; `validate` refuses a value of the right type that cannot work, also by
name, before any data is loaded: the top-level keys here, each chosen option's keys by its own
schema's `check`, reached through its registry (no code here names an option).
"""

from __future__ import annotations

import copy
import hashlib
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from vae.errors import ConfigError
from vae.schema import (
    GROUP_SCHEMAS,
    DataConfig,
    LikelihoodConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    PriorConfig,
    check,
    likelihood_group,
)

# The top-level keys and the groups. Values: conf/config.yaml and conf/<group>/<option>.yaml.


@dataclass
class Config:
    """The top-level keys; their values (and comments) are in conf/config.yaml."""

    latent_dim: int = MISSING
    kl_weight: float = MISSING
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
    gen_loss: LikelihoodConfig = MISSING  # the decoder's likelihood: conf/gen_loss/<name>.yaml (vae.likelihoods)
    prior: PriorConfig = MISSING  # the top layer's prior: conf/prior/<name>.yaml (vae.priors)


def schemas() -> dict[tuple[str, str], type]:
    """Hydra's schema store: the top-level keys, and each registered option's schema as
    `schema/<group>/<name>` (its YAML file's defaults list names it), derived from the registries."""
    table: dict[tuple[str, str], type] = {("schema", "config"): Config}
    for key, registry in registries().items():
        group, _, leaf = key.partition(".")
        if leaf != "name":
            continue  # optim.schedule: options without keys of their own
        for name in registry:
            if registry.schema(name) is not None:
                table[(f"schema/{group}", name)] = registry.schema(name)
    return table


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
    for (group, name), node in schemas().items():
        store.store(group=group, name=name, node=node)


def config_dir() -> Path:
    """conf/ shipped inside the installed package, else the repository's own (editable installs)."""
    packaged = Path(__file__).resolve().parent / "conf"
    if (packaged / "config.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "conf"


def _summary(path: Path) -> str:
    """The `# summary: ...` line at the top of an option's YAML file ("" without one)."""
    if not path.is_file():
        return ""
    return next(
        (line[len("# summary:") :].strip() for line in path.read_text().splitlines() if line.startswith("# summary:")),
        "",
    )


def option_summaries() -> dict[str, dict[str, str]]:
    """Every group a user chooses from, with each option's one-line summary: {group: {option: summary}}.

    The groups of a registry (data, model, optim, objective) list what is registered, in registration
    order; the others (experiment, hydra/launcher) what conf/ holds. The summary is the `# summary: ...`
    line of the option's YAML file. The schema's groups are internal and not listed.
    """
    root = config_dir()
    groups: dict[str, dict[str, str]] = {}
    registered = {key.partition(".")[0]: registry for key, registry in registries().items() if key.endswith(".name")}
    for path in sorted(root.rglob("*.yaml")):
        group = path.parent.relative_to(root).as_posix()
        if group != "." and group not in registered:
            groups.setdefault(group, {})[path.stem] = _summary(path)
    for group, registry in registered.items():
        groups[group] = {name: _summary(root / group / f"{name}.yaml") for name in registry}
    return dict(sorted(groups.items()))


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
    keys = ["latent_dim", "kl_weight", "reduction", "epochs", "batch_size", "seed", "device"]
    choices = {**CHOICES, **{key: registry.names() for key, registry in registries().items()}}
    described = [
        f"{key}={defaults[key]}" + (f" ({' | '.join(choices[key])})" if key in choices else "") for key in keys
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


# Group keys added since runs were first saved, with the value that reproduces what such a run did
# (where it differs from today's default): a run saved before optim.max_warmup_epochs had no bound.
ADDED_SINCE = {"optim": {"max_warmup_epochs": 0.0}}


def with_shared_defaults(config: dict) -> dict:
    """A saved run's config with the group keys added since it was written, at the values it ran with."""
    filled = dict(config)
    filled["gen_loss"] = likelihood_group(config.get("gen_loss"))  # a string before gen_loss was a group
    for group, schema in GROUP_SCHEMAS.items():
        shared = OmegaConf.to_container(OmegaConf.structured(schema))
        shared = {key: value for key, value in shared.items() if value != MISSING}
        # A group added since the run was written (objective, prior) is the default it had then.
        saved = filled.get(group, {"objective": {"name": "elbo"}, "prior": {"name": "standard"}}.get(group, {}))
        filled[group] = {**shared, **(ADDED_SINCE.get(group, {}) if group in config else {}), **saved}
    return filled


# The top-level keys' values of the right type that cannot work. Each option's keys are checked by its
# schema (vae/schema.py and the option's module), through its registry (`registries`), whose names are
# also the choices of the keys that name an option (data.name, model.name, ...): what can be built.
CHOICES = {
    "reduction": ("mean", "sum"),
    "precision": ("auto", "fp32", "bf16"),
    "on_nan": ("stop", "skip"),
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
)
AT_LEAST_ZERO = {
    "kl_weight": "a number >= 0",
    "kl_warmup_epochs": "a number >= 0",
    "free_bits": "a number >= 0 (nats per latent dim)",
    "seed": "an integer >= 0",
    "threads": "an integer >= 0 (0 = auto)",
    "checkpoint_every_steps": "an integer >= 0",
    "snapshot_every_epochs": "an integer >= 0",
    "quality_every_epochs": "an integer >= 0 (0 = off)",
}


def registries() -> dict:
    """The config keys that name an option, each with the registry of its builders (vae.registry.Registry)."""
    from vae.build import DATASETS, MODELS, OPTIMIZERS
    from vae.likelihoods import LIKELIHOODS
    from vae.objectives import OBJECTIVES
    from vae.priors import PRIORS
    from vae.schedules import SCHEDULES

    return {
        "data.name": DATASETS,
        "model.name": MODELS,
        "objective.name": OBJECTIVES,
        "optim.name": OPTIMIZERS,
        "optim.schedule": SCHEDULES,
        "gen_loss.name": LIKELIHOODS,
        "prior.name": PRIORS,
    }


def _is_bool_or_auto(value: object) -> bool:
    return isinstance(value, bool) or value == "auto"


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

    for key, value in _numbers(resolved):  # inf or nan cannot work anywhere (a learning rate, a KL weight, ...)
        check(math.isfinite(value), key, "a finite number", value)
    for key, choices in CHOICES.items():
        check(get(key) in choices, key, "one of " + ", ".join(choices), get(key))
    for key in AT_LEAST_ONE:
        check(get(key) >= 1, key, "an integer >= 1", get(key))
    for key, expectation in AT_LEAST_ZERO.items():
        check(get(key) >= 0, key, expectation, get(key))
    device = str(get("device"))
    check(
        device in ("auto", "cpu", "cuda") or device.startswith("cuda:"),
        "device",
        "one of auto, cpu, cuda, cuda:N",
        device,
    )
    for key in ("compile", "channels_last"):
        check(isinstance(get(key), bool) or get(key) == "auto", key, "auto, true or false", get(key))
    sigma = get("decoder_sigma")
    check(
        sigma in ("learned", "optimal")
        or (isinstance(sigma, int | float) and not isinstance(sigma, bool) and sigma > 0),
        "decoder_sigma",
        "learned, optimal or a number > 0",
        sigma,
    )
    # Each chosen option: its name against what is registered (the choices listed), then its schema's checks.
    for key, registry in registries().items():
        registry.check(get(key), get)

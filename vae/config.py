"""Checks of a composed config that Hydra cannot make by type, done once at start-up.

Hydra (struct mode) already refuses unknown keys and unknown group options; this module
refuses bad values, naming the key, before any data is loaded.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def _check(condition: bool, key: str, expectation: str, value: object) -> None:
    if not condition:
        raise ConfigError(f"{key} must be {expectation} (got {value!r})")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_bool_or_auto(value: object) -> bool:
    return isinstance(value, bool) or value == "auto"


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first key whose value cannot work."""
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as error:  # an interpolation or missing value: say which
        raise ConfigError(f"config does not resolve: {error}") from None
    get = resolved.get
    _check(_is_int(get("latent_dim")) and get("latent_dim") >= 1, "latent_dim", "an integer >= 1", get("latent_dim"))
    _check(_is_number(get("kl_weight")) and get("kl_weight") >= 0, "kl_weight", "a number >= 0", get("kl_weight"))
    _check(
        _is_number(get("kl_warmup_epochs")) and get("kl_warmup_epochs") >= 0,
        "kl_warmup_epochs",
        "a number >= 0",
        get("kl_warmup_epochs"),
    )
    _check(
        _is_number(get("free_bits")) and get("free_bits") >= 0,
        "free_bits",
        "a number >= 0 (nats per latent dim)",
        get("free_bits"),
    )
    _check(get("gen_loss") in ("bce", "l2"), "gen_loss", "one of bce, l2", get("gen_loss"))
    _check(get("reduction") in ("mean", "sum"), "reduction", "one of mean, sum", get("reduction"))
    _check(_is_int(get("epochs")) and get("epochs") >= 1, "epochs", "an integer >= 1", get("epochs"))
    _check(_is_int(get("batch_size")) and get("batch_size") >= 1, "batch_size", "an integer >= 1", get("batch_size"))
    _check(_is_int(get("seed")) and get("seed") >= 0, "seed", "an integer >= 0", get("seed"))
    _check(
        get("device") in ("auto", "cpu", "cuda") or str(get("device")).startswith("cuda:"),
        "device",
        "one of auto, cpu, cuda, cuda:N",
        get("device"),
    )
    _check(isinstance(get("deterministic"), bool), "deterministic", "true or false", get("deterministic"))
    _check(get("precision") in ("auto", "fp32", "bf16"), "precision", "one of auto, fp32, bf16", get("precision"))
    _check(_is_bool_or_auto(get("compile")), "compile", "auto, true or false", get("compile"))
    _check(_is_bool_or_auto(get("channels_last")), "channels_last", "auto, true or false", get("channels_last"))
    _check(_is_int(get("threads")) and get("threads") >= 0, "threads", "an integer >= 0 (0 = auto)", get("threads"))
    _check(get("on_nan") in ("stop", "skip"), "on_nan", "one of stop, skip", get("on_nan"))
    _check(
        _is_int(get("checkpoint_every_steps")) and get("checkpoint_every_steps") >= 0,
        "checkpoint_every_steps",
        "an integer >= 0",
        get("checkpoint_every_steps"),
    )
    for key in ("log_every", "eval_batch_size", "num_image_samples", "grid_size"):
        _check(_is_int(get(key)) and get(key) >= 1, key, "an integer >= 1", get(key))

    data = resolved["data"]
    _check(
        data.get("name") in ("mnist", "fashion_mnist", "cifar10", "folder", "synthetic"),
        "data.name",
        "mnist, fashion_mnist, cifar10, folder or synthetic",
        data.get("name"),
    )
    _check(
        data.get("val_source") in ("holdout", "test"), "data.val_source", "one of holdout, test", data.get("val_source")
    )
    _check(
        data.get("binarize") in ("none", "dynamic", "static"),
        "data.binarize",
        "one of none, dynamic, static",
        data.get("binarize"),
    )
    shape = data.get("image_shape")
    _check(
        isinstance(shape, list) and len(shape) == 3 and all(_is_int(s) and s >= 1 for s in shape),
        "data.image_shape",
        "[channels, height, width] of positive integers",
        shape,
    )
    if data["name"] == "synthetic":
        for key in ("num_train", "num_val", "num_test"):
            _check(_is_int(data.get(key)) and data.get(key) >= 1, f"data.{key}", "an integer >= 1", data.get(key))
    elif data["name"] == "folder":
        _check(data.get("path") not in (None, ""), "data.path", "a folder of images", data.get("path"))
        _check(
            _is_number(data.get("val_fraction")) and 0 < data.get("val_fraction") < 1,
            "data.val_fraction",
            "a number between 0 and 1",
            data.get("val_fraction"),
        )
        _check(
            shape[1] == shape[2] == data.get("image_size"),
            "data.image_size",
            f"the side of data.image_shape {shape}",
            data.get("image_size"),
        )
    else:
        _check(
            _is_int(data.get("val_split")) and data.get("val_split") >= 1,
            "data.val_split",
            "an integer >= 1",
            data.get("val_split"),
        )
        _check(data.get("root") not in (None, ""), "data.root", "a folder (or set VAE_DATA_DIR)", data.get("root"))

    model = resolved["model"]
    _check(model.get("name") in ("conv", "mlp"), "model.name", "one of conv, mlp", model.get("name"))
    _check(model.get("init") in ("glorot", "torch"), "model.init", "one of glorot, torch", model.get("init"))
    if model["name"] == "conv":
        channels = model.get("channels")
        _check(
            isinstance(channels, list) and len(channels) >= 2 and all(_is_int(c) and c >= 1 for c in channels),
            "model.channels",
            "a list of at least 2 positive integers",
            channels,
        )
        _check(
            _is_int(model.get("hidden_dim")) and model.get("hidden_dim") >= 1,
            "model.hidden_dim",
            "an integer >= 1",
            model.get("hidden_dim"),
        )
    else:
        dims = model.get("hidden_dims")
        _check(
            isinstance(dims, list) and all(_is_int(d) and d >= 1 for d in dims),
            "model.hidden_dims",
            "a list of positive integers",
            dims,
        )

    optim = resolved["optim"]
    _check(optim.get("name") in ("adam", "rmsprop"), "optim.name", "one of adam, rmsprop", optim.get("name"))
    _check(_is_number(optim.get("lr")) and optim.get("lr") > 0, "optim.lr", "a number > 0", optim.get("lr"))
    _check(
        _is_number(optim.get("weight_decay")) and optim.get("weight_decay") >= 0,
        "optim.weight_decay",
        "a number >= 0",
        optim.get("weight_decay"),
    )

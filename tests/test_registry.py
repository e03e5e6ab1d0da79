"""Registries: an option is chosen in one place; a name registered in a test is accepted and built, an unknown one refused by name."""

from __future__ import annotations

import re

import pytest
import torch

from vae import build
from vae.config import ConfigError, registries, validate
from vae.registry import Registry

from conftest import TINY, TINY_DATA, compose_config


def refused(key: str, registry: Registry, name: str) -> str:
    """The whole message an unknown name gets: the key, every registered choice in order, the value."""
    return "^" + re.escape(f"{key} must be one of {', '.join(registry.names())} (got {name!r})") + "$"


def test_register_get_and_names_keep_the_order_and_refuse_an_unknown_name_listing_the_choices():
    registry = Registry("thing.name")

    @registry.register("b")
    def b():
        return "b"

    registry.register("a")(lambda: "a")
    assert registry.names() == ("b", "a") and list(registry) == ["b", "a"] and len(registry) == 2
    assert registry.get("b") is b and "a" in registry and "c" not in registry
    assert registry.get("c", None) is None
    with pytest.raises(ConfigError, match=r"^thing\.name must be one of b, a \(got 'c'\)$"):
        registry.get("c")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(lambda: "again")


def test_each_name_key_has_a_registry_and_no_fixed_choices():
    from vae.config import CHOICES

    keys = registries()
    assert set(keys) == {
        "data.name",
        "model.name",
        "objective.name",
        "optim.name",
        "optim.schedule",
        "gen_loss.name",
        "prior.name",
    }
    assert not set(keys) & set(CHOICES)
    assert all(isinstance(registry, Registry) and registry.key == key for key, registry in keys.items())


def test_a_registered_optimizer_is_accepted_by_validate_and_built_by_build_optimizer(monkeypatch):
    built = {}

    def sgd(parameters, optim):
        built["lr"] = optim["lr"]
        return torch.optim.SGD(parameters, lr=optim["lr"])

    cfg = compose_config([*TINY, "optim.name=sgd_test"])
    with pytest.raises(ConfigError, match=refused("optim.name", build.OPTIMIZERS, "sgd_test")):
        validate(cfg)
    monkeypatch.setitem(build.OPTIMIZERS, "sgd_test", sgd)
    validate(cfg)
    optimizer = build.build_optimizer(torch.nn.Linear(2, 1).parameters(), compose_config_dict(cfg))
    assert isinstance(optimizer, torch.optim.SGD) and built["lr"] == cfg.optim.lr
    monkeypatch.undo()
    assert "sgd_test" not in build.OPTIMIZERS.names()


def test_a_registered_model_is_accepted_by_validate_and_built_by_build_model(monkeypatch):
    def tiny(model_cfg, *, image_shape, latent_dim):
        return build.MODELS.get("mlp")(
            {**model_cfg, "hidden_dims": [8]}, image_shape=image_shape, latent_dim=latent_dim
        )

    cfg = compose_config([*TINY_DATA, "model=mlp", "model.name=tiny_test"])
    with pytest.raises(ConfigError, match=refused("model.name", build.MODELS, "tiny_test")):
        validate(cfg)
    monkeypatch.setitem(build.MODELS, "tiny_test", tiny)
    validate(cfg)
    model = build.build_model(compose_config_dict(cfg))
    assert [layer.out_features for layer in model.modules() if isinstance(layer, torch.nn.Linear)][0] == 8


def test_an_unknown_name_is_refused_by_the_builders_too():
    cfg = compose_config_dict(compose_config(TINY))
    with pytest.raises(ConfigError, match=refused("optim.name", build.OPTIMIZERS, "nope")):
        build.build_optimizer([], {**cfg, "optim": {**cfg["optim"], "name": "nope"}})
    with pytest.raises(ConfigError, match=refused("model.name", build.MODELS, "nope")):
        build.build_model({**cfg, "model": {**cfg["model"], "name": "nope"}})
    with pytest.raises(ConfigError, match=refused("data.name", build.DATASETS, "nope")):
        build.build_data({**cfg, "data": {**cfg["data"], "name": "nope"}})


def compose_config_dict(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def test_an_option_registered_with_its_schema_is_stored_checked_and_listed_with_no_other_edit(monkeypatch):
    """One registration gives the option Hydra's schema node, its checks in validate and a line in --help."""
    from dataclasses import dataclass

    from vae.config import help_text, schemas
    from vae.schema import ModelConfig, check

    @dataclass
    class WideConfig(ModelConfig):
        width: int = 4

        @classmethod
        def check(cls, get):
            super().check(get)
            check(get("model.width") % 2 == 0, "model.width", "an even number", get("model.width"))

    registry = Registry("model.name")
    for name in build.MODELS:
        registry.register(name, schema=build.MODELS.schema(name))(build.MODELS[name])
    registry.register("wide_test", schema=WideConfig)(lambda model_cfg, **_: None)
    monkeypatch.setattr(build, "MODELS", registry)

    assert schemas()[("schema/model", "wide_test")] is WideConfig
    assert "wide_test" in help_text()
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(OmegaConf.to_container(compose_config(TINY_DATA)))  # untyped: the model group swapped
    cfg.model = {"name": "wide_test", "init": "glorot", "output_bias": "init", "width": 3}
    with pytest.raises(ConfigError, match=r"^model\.width must be an even number \(got 3\)$"):
        validate(cfg)
    cfg.model.width = 4
    validate(cfg)
    cfg.model.init = "zeros"  # the base schema's checks run too (super().check)
    with pytest.raises(ConfigError, match=r"^model\.init must be one of glorot, torch"):
        validate(cfg)


def test_every_registered_option_has_its_yaml_file_naming_its_schema_and_nothing_else_is_there():
    from vae.config import config_dir, schemas

    root = config_dir()
    stored = schemas()
    for key, registry in registries().items():
        group, _, leaf = key.partition(".")
        if leaf != "name":
            continue
        assert sorted(registry) == sorted(path.stem for path in (root / group).glob("*.yaml")), group
        for name in registry:
            assert (f"schema/{group}", name) in stored, f"{group}={name} has no schema"
            assert f"- /schema/{group}/{name}@_here_" in (root / group / f"{name}.yaml").read_text()


def test_validation_names_no_option():
    """vae.config.validate branches on no option's name: an option's checks are its schema's."""
    import ast
    import inspect

    from vae import config

    names = {name for registry in registries().values() for name in registry}
    tree = ast.parse(inspect.getsource(config.validate))
    literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert literals & names == set()
    assert "resnet" in names and "celeba" in names and "step" in names  # the names are really there to find

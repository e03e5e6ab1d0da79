"""Config: every file composes, the experiments say what the seeds did, bad keys and values are refused by name."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hydra.errors import HydraException
from omegaconf import OmegaConf

from vae.config import ConfigError, config_dir, validate

from conftest import REPO, compose_config, run_cli

GROUPS = ("data", "model", "optim", "experiment")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in group_options(g)])
def test_every_config_file_composes_and_validates(group, option, tmp_path):
    extra = [f"data.path={tmp_path}"] if (group, option) == ("data", "folder") else []  # the one required value
    cfg = compose_config([f"{group}={option}", *extra])
    validate(cfg)
    assert OmegaConf.is_struct(cfg)


def test_every_registered_option_has_its_config_file_and_every_file_is_registered():
    from vae.build import DATASETS, MODELS, OPTIMIZERS

    for group, registry in (("data", DATASETS), ("model", MODELS), ("optim", OPTIMIZERS)):
        assert group_options(group) == sorted(registry.names()), group
        for option in group_options(group):  # each file names the option it is
            assert compose_config([f"{group}={option}"])[group].name == option
    assert {"lecture", "book", "sweep_kl_latent", "optuna_search"} <= set(group_options("experiment"))


@pytest.mark.parametrize("key", ["data.name", "model.name", "objective.name", "optim.name", "optim.schedule"])
def test_a_name_no_registry_holds_is_refused_naming_the_key_and_the_registered_choices(key):
    from vae.config import registries

    choices = registries()[key].names()
    assert choices  # every kind has options
    with pytest.raises(ConfigError, match=rf"^{key} must be one of ") as error:
        validate(compose_config([f"{key}=nope"]))
    assert str(error.value) == f"{key} must be one of {', '.join(choices)} (got 'nope')"


def test_folder_data_needs_its_path_and_derives_the_image_shape():
    with pytest.raises(ConfigError, match="data.path"):
        validate(compose_config(["data=folder"]))
    cfg = compose_config(["data=folder", "data.path=/images", "data.image_size=48"])
    assert list(cfg.data.image_shape) == [3, 48, 48]


def test_defaults_are_the_lecture_model():
    cfg = compose_config()
    assert (cfg.latent_dim, cfg.kl_weight, cfg.gen_loss.name, cfg.reduction) == (2, 1e-3, "bce", "mean")
    assert (cfg.data.name, cfg.model.name, cfg.optim.name) == ("mnist", "conv", "adam")
    assert cfg.data.val_source == "holdout" and cfg.data.val_split == 5000


def test_lecture_experiment_is_the_lecture_run():
    cfg = compose_config(["experiment=lecture"])
    assert (cfg.latent_dim, cfg.kl_weight, cfg.batch_size, cfg.epochs, cfg.reduction) == (2, 1e-3, 128, 50, "mean")
    assert cfg.optim.name == "adam" and cfg.data.val_source == "test"


def test_book_experiment_is_the_books_run():
    cfg = compose_config(["experiment=book"])
    assert (cfg.latent_dim, cfg.kl_weight, cfg.batch_size, cfg.epochs) == (2, 1e-3, 16, 10)
    assert cfg.optim.name == "rmsprop" and cfg.data.val_source == "test"


def test_command_line_overrides_the_experiment():
    cfg = compose_config(["experiment=lecture", "epochs=3", "latent_dim=16"])
    assert (cfg.epochs, cfg.latent_dim) == (3, 16)


def test_data_root_comes_from_vae_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    assert compose_config().data.root == str(tmp_path)
    monkeypatch.delenv("VAE_DATA_DIR")
    assert compose_config().data.root == "./data"


def test_misspelled_key_is_refused_naming_it():
    with pytest.raises(HydraException, match="kl_wieght"):
        compose_config(["kl_wieght=1e-3"])


@pytest.mark.parametrize("override", ["data=nope", "gen_loss=nope"])
def test_unknown_group_option_is_refused_naming_it(override):
    with pytest.raises(HydraException, match="nope"):
        compose_config([override])


@pytest.mark.parametrize(
    "override,key",
    [
        ("latent_dim=0", "latent_dim"),
        ("kl_weight=-1", "kl_weight"),
        ("gen_loss.name=foo", "gen_loss.name"),
        ("reduction=avg", "reduction"),
        ("batch_size=0", "batch_size"),
        ("epochs=0", "epochs"),
        ("device=tpu", "device"),
        ("precision=fp8", "precision"),
        ("data.val_source=train", "data.val_source"),
        ("data.binarize=maybe", "data.binarize"),
        ("model.init=zeros", "model.init"),
        ("optim.lr=0", "optim.lr"),
        ("kl_weight=inf", "kl_weight"),  # non-finite numbers, anywhere in the config
        ("optim.lr=nan", "optim.lr"),
        ("kl_warmup_epochs=inf", "kl_warmup_epochs"),
        ("free_bits=-inf", "free_bits"),
        ("quality_every_epochs=-1", "quality_every_epochs"),
        ("quality_n=0", "quality_n"),
    ],
)
def test_invalid_value_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{key} must be"):
        validate(compose_config([override]))


@pytest.mark.parametrize(
    "override,key",
    [("latent_dim=2.5", "latent_dim"), ("epochs=ten", "epochs"), ("data.val_split=half", "data.val_split")],
)
def test_a_value_of_the_wrong_type_is_refused_by_the_schema_naming_the_key(override, key):
    with pytest.raises(HydraException, match=rf"override {key}=") as error:
        compose_config([override])
    assert f"full_key: {key}" in str(error.value.__cause__)


@pytest.mark.slow  # runs the CLI in a subprocess
def test_cli_refuses_a_bad_value_before_loading_data_and_writes_no_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("vae.train", "latent_dim=0", "data.root=/nonexistent", f"hydra.run.dir={run_dir}")
    assert result.returncode != 0
    assert "latent_dim must be an integer >= 1 (got 0)" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (run_dir / "checkpoints" / "last.pt").exists()


@pytest.mark.slow  # runs the CLI in a subprocess
def test_cli_refuses_a_misspelled_key(tmp_path):
    result = run_cli("vae.train", "kl_wieght=1e-3", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "kl_wieght" in result.stderr
    assert not (tmp_path / "run").exists()


def test_two_launches_in_one_second_get_different_directories():
    compose_config()  # registers Hydra's `now` resolver

    def launch():  # each launch loads and resolves the config afresh
        hydra_cfg = OmegaConf.load(Path(config_dir()) / "config.yaml").hydra
        return hydra_cfg.run.dir, hydra_cfg.sweep.dir

    first_run, first_sweep = launch()
    time.sleep(0.002)
    second_run, second_sweep = launch()
    assert first_run.startswith("outputs/runs/") and first_sweep.startswith("outputs/multirun/")
    assert first_run != second_run and first_sweep != second_sweep


def _flat(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_lecture_fast_is_the_lecture_with_another_schedule():
    from vae.config import compose_dict

    lecture, fast = _flat(compose_dict(["experiment=lecture"])), _flat(compose_dict(["experiment=lecture_fast"]))
    changed = {key for key in lecture if lecture[key] != fast[key]}
    assert "epochs" in changed and "optim.schedule" in changed
    assert changed <= {"batch_size", "epochs", "optim.lr", "optim.warmup_steps", "optim.schedule", "optim.lr_floor"}
    assert fast["epochs"] <= 8 and fast["data.val_source"] == "test" and fast["optim.eps"] == 1e-7


def test_help_lists_every_option_a_user_chooses_from_with_its_summary_and_no_schema_group():
    from vae.config import config_dir, help_text, option_summaries

    groups = option_summaries()
    files = {(p.parent.relative_to(config_dir()).as_posix(), p.stem) for p in config_dir().rglob("*/*.yaml")}
    assert {(group, option) for group, options in groups.items() for option in options} == files
    missing = [f"{group}/{option}" for group, options in groups.items() for option, text in options.items() if not text]
    assert missing == []  # every option's YAML file starts with a `# summary:` line
    text = help_text()
    assert "schema" not in text
    for options in groups.values():
        for option, summary in options.items():
            assert f"{option:<16} {summary}" in text


def test_the_readme_describes_every_experiment():
    from vae.config import option_summaries

    readme = (REPO / "README.md").read_text()
    for experiment in option_summaries()["experiment"]:
        assert f"`{experiment}`" in readme, experiment


def test_composing_again_gives_an_independent_copy_and_an_edited_yaml_file_is_read_again(monkeypatch, tmp_path):
    import shutil

    import vae.config

    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    monkeypatch.setattr(vae.config, "config_dir", lambda: conf)
    first = vae.config.compose(["latent_dim=3"])
    first.kl_weight = 0.5
    assert vae.config.compose(["latent_dim=3"]).kl_weight == 1e-3  # a copy, not the object changed above
    root = conf / "config.yaml"
    root.write_text(root.read_text().replace("kl_weight: 1.0e-3 ", "kl_weight: 2.0e-3 "))
    assert vae.config.compose(["latent_dim=3"]).kl_weight == 2e-3


def test_splits_the_data_cannot_meet_are_refused_by_key_before_any_step(tmp_path):
    from test_data import write_fake_mnist

    from vae.train import train

    from conftest import TINY

    with pytest.raises(ConfigError, match=r"^batch_size must be at most the training split's 256 images \(got 1000\)"):
        train(compose_config([*TINY, "batch_size=1000"]), tmp_path / "a")
    write_fake_mnist(tmp_path / "data" / "MNIST" / "raw", gz=True, num_train=40, num_test=8)
    mnist = [w for w in TINY if not w.startswith("data")] + ["data=mnist", f"data.root={tmp_path / 'data'}"]
    with pytest.raises(
        ConfigError, match=r"^data.val_split must be between 1 and 39: the training split has 40 images \(got 40\)"
    ):
        train(compose_config([*mnist, "data.val_split=40"]), tmp_path / "b")
    assert not (tmp_path / "a" / "checkpoints" / "last.pt").exists() and not (tmp_path / "b" / "run.json").exists()

"""Scaling out: launcher and sweeper configs compose, and a joblib sweep runs its jobs in parallel."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir

from vae.config import config_dir, register_configs
from vae.runtime import threads_per_parallel_job

from conftest import TINY, run_cli


def compose_with_hydra(overrides):
    register_configs()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_slurm_launcher_config_composes():
    cfg = compose_with_hydra(["hydra/launcher=slurm"])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.timeout_min == 240


def test_optuna_search_config_composes_and_searches_both_knobs():
    cfg = compose_with_hydra(["experiment=optuna_search"])
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "minimize"
    assert set(cfg.hydra.sweeper.params) == {"kl_weight", "latent_dim"}


def test_joblib_launcher_config_composes():
    assert compose_with_hydra(["hydra/launcher=joblib"]).hydra.launcher._target_.endswith("JoblibLauncher")


def test_parallel_jobs_share_the_cores():
    assert threads_per_parallel_job(2, cores=8) == 4
    assert threads_per_parallel_job(3, cores=8) == 2  # what is left over stays idle, never oversubscribed
    assert threads_per_parallel_job(1, cores=6) == 6
    assert threads_per_parallel_job(10_000, cores=8) == 1  # more jobs than cores: one thread each
    assert (
        threads_per_parallel_job(None, cores=8) == threads_per_parallel_job(-1, cores=8) == 1
    )  # joblib: a job per core


@pytest.mark.slow  # runs the CLI in a subprocess
def test_joblib_sweep_runs_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "vae.train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY,
        "data.num_train=64",
        "epochs=1",
        "latent_dim=2,3",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["epoch"] == 1
        assert json.loads((sweep / job / "run.json").read_text())["runtime"]["threads"] == threads_per_parallel_job(2)


@pytest.mark.slow  # runs the CLI in a subprocess
def test_two_ddp_processes_reach_the_weights_of_one_process_with_the_same_global_batch(tmp_path):
    import torch

    # 66 images at batch 33: two steps, and shards of 17 and 16 rows on the two ranks.
    args = [*TINY, "data.num_train=66", "batch_size=33", "epochs=1", "precision=fp32", "deterministic=true"]
    single = run_cli("vae.train", *args, f"hydra.run.dir={tmp_path / 'one'}")
    assert single.returncode == 0, single.stderr[-2000:]
    result = run_cli(
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "vae.train",
        *args,
        f"hydra.run.dir={tmp_path / 'two'}",
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    one = torch.load(tmp_path / "one" / "checkpoints" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "checkpoints" / "last.pt", weights_only=True)
    assert one["step"] == two["step"] == 2
    for key, value in one["model"].items():
        assert torch.allclose(value, two["model"][key], atol=1e-6, rtol=1e-5), key
    # Only rank 0 wrote into the run directory: one event file, one .hydra.
    assert len(list((tmp_path / "two").glob("events.out.tfevents.*"))) == 1
    assert (tmp_path / "two" / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow  # runs the CLI in a subprocess
def test_optuna_search_runs_and_reports_the_best_trial(tmp_path):
    from omegaconf import OmegaConf

    sweep = tmp_path / "optuna"
    result = run_cli(
        "vae.train",
        "-m",
        "experiment=optuna_search",
        "hydra.sweeper.n_trials=2",
        *TINY,
        "data.num_train=64",
        "epochs=1",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    values = [json.loads((sweep / job / "metrics.json").read_text())["val"]["neg_elbo_nats"] for job in ("0", "1")]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == min(values) and set(best.best_params) == {"kl_weight", "latent_dim"}

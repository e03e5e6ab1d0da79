"""Shared fixtures: Hydra's compose API in-process, and one tiny trained run for every test that reads a run directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vae.build import build_model
from vae.config import compose, compose_dict
from vae.distributions import DiagonalGaussian, LatentLayer, StandardNormal
from vae.model import VAE, VAEOutput

REPO = Path(__file__).resolve().parent.parent
# A run small enough for a test: synthetic data, a handful of steps, any model.
TINY_DATA = [
    "data=synthetic",
    "data.num_train=256",
    "data.num_val=64",
    "data.num_test=64",
    "batch_size=32",
    "eval_batch_size=64",
    "num_image_samples=16",
    "grid_size=5",
    "log_every=4",
]
# ... and the lecture's conv net at a quarter of its width (about 3x faster to train: 0.55 s
# for two epochs of TINY on 2 cores, 1.7 s at full width).
TINY = [*TINY_DATA, "model.channels=[8,16,16,16]", "model.hidden_dim=16"]


# make_synthetic's shape and classes for MNIST-sized test images.
MNIST_LIKE = {"image_shape": (1, 28, 28), "num_classes": 10}


def compose_config(overrides: list[str] | None = None):
    """The config `python -m vae.train <overrides>` would get, composed in-process."""
    return compose(overrides or [])


def make_vae(
    name: str = "conv", *, latent_dim: int = 2, image_shape: tuple[int, int, int] = (1, 28, 28), **model: object
) -> VAE:
    """The VAE that `model=<name>` builds (its defaults from conf/), with `model.<key>` overrides and another image shape."""
    overrides = [f"model={name}", f"latent_dim={latent_dim}"]
    overrides += [f"model.{key}={list(value) if isinstance(value, tuple) else value}" for key, value in model.items()]
    config = compose_dict(overrides)
    config["data"]["image_shape"] = list(image_shape)
    return build_model(config)


def one_layer_output(logits, mu, log_var, z=None) -> VAEOutput:
    """A model output with one stochastic layer: q = N(mu, exp(log_var)), the prior N(0, I), z (mu when not given)."""
    posterior = DiagonalGaussian(mu, log_var)
    return VAEOutput(logits, (LatentLayer(posterior, StandardNormal(mu.shape[-1]), mu if z is None else z),))


def run_cli(*args: str, cwd: Path = REPO, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run `python -m <args>` the way a user would, from the repository root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("VAE_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session", autouse=True)
def image_cache_dir(tmp_path_factory) -> Path:
    """The decode cache (vae/image_cache.py) of every test, and of the CLIs they start, in a temporary folder: never ~/.cache."""
    folder = tmp_path_factory.mktemp("image_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAE_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A two-epoch run on synthetic data at latent_dim 2, trained once through `vae.train.train`."""
    from vae.train import train

    run_dir = tmp_path_factory.mktemp("tiny_run")
    train(compose_config([*TINY, "epochs=2", "latent_dim=2"]), run_dir)
    return run_dir


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> Path:
    """A two-by-two multirun (kl_weight 0, 1e-3 x latent_dim 2, 3) on synthetic data, through the CLI."""
    sweep_dir = tmp_path_factory.mktemp("tiny_sweep") / "sweep"
    result = run_cli(
        "vae.train",
        "-m",
        *TINY,
        "data.num_train=64",
        "epochs=1",
        "kl_weight=0,1e-3",
        "latent_dim=2,3",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return sweep_dir


def pytest_configure(config) -> None:
    """Under pytest-xdist (`-n N`), pin each worker to its own share of the cores.

    Every worker would otherwise run torch with one thread per core, so two workers on two
    cores would run four threads; pinned, the trainer's `threads: 0` (one per core it may use)
    and every CLI the worker starts see the worker's cores only.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    index = int(worker.removeprefix("gw"))
    share = [core for position, core in enumerate(cores) if position % count == index % count]
    os.sched_setaffinity(0, share or cores)

"""Learning-rate schedules: their shapes, their place in the trainer, and resume bit for bit."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae.config import ConfigError, compose_dict
from vae.schedules import lr_factor, stage_steps
from vae.train import resume_config, train

from conftest import TINY, compose_config

DETERMINISTIC = [*TINY, "data.num_train=128", "deterministic=true", "latent_dim=2"]  # 4 steps per epoch


def factors(schedule: str, steps: int, **options) -> list[float]:
    options = {"warmup_steps": 0, "total_steps": steps, "floor_ratio": 0.0, "stages": (), **options}
    return [lr_factor(step, schedule=schedule, **options) for step in range(steps)]


def test_constant_is_exactly_one_so_the_default_run_is_unchanged():
    assert factors("constant", 50) == [1.0] * 50


def test_warmup_rises_linearly_then_hands_over():
    assert factors("constant", 6, warmup_steps=4) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = factors("cosine", 14, warmup_steps=4)
    assert cosine[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]  # the decay starts from 1 after the warm-up


def test_cosine_and_linear_fall_to_the_floor_at_the_last_step():
    cosine = factors("cosine", 101, total_steps=100, floor_ratio=0.1)
    assert cosine[0] == 1.0 and math.isclose(cosine[50], 0.55) and math.isclose(cosine[100], 0.1)
    assert all(a >= b for a, b in zip(cosine, cosine[1:], strict=False))
    linear = factors("linear", 101, total_steps=100)
    assert math.isclose(linear[25], 0.75) and linear[100] == 0.0


def test_stepwise_stages_follow_epochs_and_keep_the_last_lr():
    stages = stage_steps([[1, 1e-3], [3, 1e-3 * 10 ** (-1 / 7)], [0.5, 1e-4]], steps_per_epoch=10, base_lr=1e-3)
    assert [end for end, _ in stages] == [10, 40, 45]
    lrs = factors("step", 60, stages=stages)
    assert lrs[9] == 1.0 and math.isclose(lrs[10], 10 ** (-1 / 7)) and math.isclose(lrs[39], 10 ** (-1 / 7))
    assert math.isclose(lrs[44], 0.1) and math.isclose(lrs[59], 0.1)


def _events(run_dir, tag):
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_the_trainer_steps_the_schedule_and_logs_train_lr(tmp_path):
    train(
        compose_config(
            [*DETERMINISTIC, "epochs=2", "optim.schedule=cosine", "optim.lr_floor=1e-4", "optim.warmup_steps=0"]
        ),
        tmp_path,
    )
    # Epoch 1's last step is step 3 of 8, epoch 2's is step 7 (0-based).
    expected = [lr_factor(s, schedule="cosine", warmup_steps=0, total_steps=8, floor_ratio=0.1) for s in (3, 7)]
    logged = _events(tmp_path, "train/lr")
    assert [step for step, _ in logged] == [1, 2]
    for (_, value), factor in zip(logged, expected, strict=True):
        assert math.isclose(value, 1e-3 * factor, rel_tol=1e-5)


@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param(["optim.warmup_steps=6"], marks=pytest.mark.slow),  # the warm-up spans the resume (2 s)
        pytest.param(  # a stage boundary mid-run (the whole suite only: 3 s more on 2 cores)
            ["optim.schedule=step", "optim.stages=[[1,2e-3],[0.5,1e-3],[1,2.5e-4]]", "optim.warmup_steps=2"],
            marks=pytest.mark.slow,
        ),
    ],
)
def test_a_schedule_resumes_bit_for_bit(tmp_path, schedule):
    train(compose_config([*DETERMINISTIC, *schedule, "epochs=2"]), tmp_path / "straight")
    train(compose_config([*DETERMINISTIC, *schedule, "epochs=1"]), tmp_path / "resumed")
    config, checkpoint = resume_config(tmp_path / "resumed", compose_config([*DETERMINISTIC, "epochs=2"]), ["epochs=2"])
    train(config, tmp_path / "resumed", resume_from=checkpoint)
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert [k for k in straight["model"] if not torch.equal(straight["model"][k], resumed["model"][k])] == []
    assert straight["optimizer"]["param_groups"][0]["lr"] == resumed["optimizer"]["param_groups"][0]["lr"]


def test_extending_a_run_whose_schedule_decays_with_its_length_is_refused(tmp_path):
    train(compose_config([*DETERMINISTIC, "epochs=1", "optim.schedule=cosine"]), tmp_path)
    with pytest.raises(ConfigError, match=r"epochs=2: this run's cosine schedule decays its lr over the 1 epochs"):
        resume_config(tmp_path, compose_config([*DETERMINISTIC, "epochs=2"]), ["epochs=2"])


@pytest.mark.parametrize(
    "override,key",
    [
        ("optim.schedule=exponential", "optim.schedule"),
        ("optim.warmup_steps=-1", "optim.warmup_steps"),
        ("optim.max_warmup_epochs=-0.5", "optim.max_warmup_epochs"),
        ("optim.lr_floor=1", "optim.lr_floor"),
        ("optim.stages=[[1,0]]", "optim.stages"),
        ("optim.schedule=step", "optim.stages"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_key(override, key):
    from vae.config import validate

    with pytest.raises(ConfigError, match=rf"^{key} must be"):
        validate(compose_config([override]))


def test_the_warmup_is_bounded_by_a_share_of_the_epoch_and_not_by_the_runs_length():
    from vae.build import warmup_steps

    optim = {"warmup_steps": 200, "max_warmup_epochs": 0.5}
    assert warmup_steps(optim, steps_per_epoch=16) == 8  # 2,048 synthetic images at batch 128
    assert warmup_steps(optim, steps_per_epoch=430) == 200  # MNIST's 55,000 at batch 128: the measured 200
    assert warmup_steps({**optim, "max_warmup_epochs": 0}, steps_per_epoch=16) == 200  # 0: no bound
    short, long = (compose_config([*DETERMINISTIC, f"epochs={epochs}", "optim.warmup_steps=200"]) for epochs in (1, 5))
    short_dict, long_dict = (OmegaConf.to_container(c, resolve=True) for c in (short, long))
    assert (
        warmup_steps(short_dict["optim"], steps_per_epoch=4) == warmup_steps(long_dict["optim"], steps_per_epoch=4) == 2
    )


def test_a_run_saved_before_the_bound_existed_resumes_with_its_whole_warmup():
    from vae.config import with_shared_defaults

    saved = compose_dict(DETERMINISTIC)
    del saved["optim"]["max_warmup_epochs"]
    assert with_shared_defaults(saved)["optim"]["max_warmup_epochs"] == 0.0
    assert compose_dict(DETERMINISTIC)["optim"]["max_warmup_epochs"] == 0.5  # new runs are bounded

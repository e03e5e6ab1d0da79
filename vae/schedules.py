"""Learning-rate schedules as a pure function of the step: warm-up, then constant, cosine, linear or stepwise.

The factor multiplies the optimizer's base lr (`optim.lr`) through `torch.optim.lr_scheduler.LambdaLR`.
Being a function of the step alone, a resumed run recomputes it exactly: the schedule
resumes bit for bit with the step counter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vae.registry import Registry
from vae.schema import check

# optim.schedule -> shape(step, *, warmup_steps, total_steps, floor_ratio, stages): the factor after the warm-up.
SCHEDULES = Registry("optim.schedule")
# Schedules whose lr depends on the run's length: extending a finished run would change its past.
DECAYING = ("cosine", "linear")


@SCHEDULES.register("constant")
def _constant(step: int, **_) -> float:
    return 1.0


def _decay(step: int, *, warmup_steps: int, total_steps: int) -> float:
    """The run's progress after the warm-up, from 0 to 1 at `total_steps`."""
    return min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))


@SCHEDULES.register("cosine")
def _cosine(step: int, *, warmup_steps: int, total_steps: int, floor_ratio: float, **_) -> float:
    progress = _decay(step, warmup_steps=warmup_steps, total_steps=total_steps)
    return floor_ratio + (1.0 - floor_ratio) * (0.5 * (1.0 + math.cos(math.pi * progress)))


@SCHEDULES.register("linear")
def _linear(step: int, *, warmup_steps: int, total_steps: int, floor_ratio: float, **_) -> float:
    progress = _decay(step, warmup_steps=warmup_steps, total_steps=total_steps)
    return floor_ratio + (1.0 - floor_ratio) * (1.0 - progress)


def _needs_stages(get) -> None:
    stages = get("optim.stages")
    check(bool(stages), "optim.stages", "a non-empty list of [epochs, lr] with optim.schedule=step", stages)


@SCHEDULES.register("step", check=_needs_stages)
def _step(step: int, *, stages: Sequence[tuple[int, float]], **_) -> float:
    for end_step, factor in stages:
        if step < end_step:
            return factor
    return stages[-1][1] if stages else 1.0


def lr_factor(
    step: int,
    *,
    schedule: str,
    warmup_steps: int,
    total_steps: int,
    floor_ratio: float,
    stages: Sequence[tuple[int, float]] = (),
) -> float:
    """The share of the base lr at `step` (0-based: the step about to be taken).

    Warm-up rises linearly over `warmup_steps` (to 1 at the first step after it). Then the schedule
    registered in SCHEDULES: `constant` stays at 1; `cosine` and `linear` fall from 1 to `floor_ratio`
    at `total_steps`; `step` follows `stages`, (end step, factor) pairs in order, and keeps the last
    factor after them.
    """
    shape = SCHEDULES.get(schedule)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return shape(step, warmup_steps=warmup_steps, total_steps=total_steps, floor_ratio=floor_ratio, stages=stages)


def stage_steps(stages: Sequence[Sequence[float]], *, steps_per_epoch: int, base_lr: float) -> list[tuple[int, float]]:
    """(epochs, lr) stages as (end step, factor of base_lr) pairs: the form `lr_factor` takes."""
    pairs, end = [], 0.0
    for epochs, lr in stages:
        end += epochs * steps_per_epoch
        pairs.append((round(end), lr / base_lr))
    return pairs


def lr_scheduler(optimizer: torch.optim.Optimizer, factor) -> torch.optim.lr_scheduler.LambdaLR:
    """torch's LambdaLR over `factor(step)`; step it after every optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

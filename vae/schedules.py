"""Learning-rate schedules as a pure function of the step: warm-up, then constant, cosine, linear or stepwise.

The factor multiplies the optimizer's base lr (`optim.lr`) through `torch.optim.lr_scheduler.LambdaLR`.
Being a function of the step alone, a resumed run recomputes it exactly: the schedule
resumes bit for bit with the step counter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

SCHEDULES = ("constant", "cosine", "linear", "step")
# Schedules whose lr depends on the run's length: extending a finished run would change its past.
DECAYING = ("cosine", "linear")


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

    Warm-up rises linearly over `warmup_steps` (to 1 at the first step after it). Then
    `constant` stays at 1; `cosine` and `linear` fall from 1 to `floor_ratio` at `total_steps`;
    `step` follows `stages`, (end step, factor) pairs in order, and keeps the last factor after them.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule must be one of {', '.join(SCHEDULES)} (got {schedule!r})")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        for end_step, factor in stages:
            if step < end_step:
                return factor
        return stages[-1][1] if stages else 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return floor_ratio + (1.0 - floor_ratio) * shape


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

"""Learning-rate schedules as pure functions of the optimizer step.

The factor multiplies the base lr. It is a function of the step alone (no hidden state), so a
resumed run continues on exactly the same curve: the scheduler's state is just its step count.
"""

from __future__ import annotations

import math
from typing import Sequence

from gear_trt.errors import ConfigError

SCHEDULES = ("cosine", "step", "constant")


def lr_factor(
    step: int,
    *,
    steps_per_epoch: int,
    epochs: int,
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
    span: Sequence[float] = (0.0, 1.0),
) -> float:
    """The lr multiplier before optimizer step `step` (0-based).

    warmup: linear up to the schedule's first value over the first `warmup_epochs` epochs.
    cosine: per step from 1 down to 0 over the remaining steps; with `span` (a, b) only the part of
            that curve from a to b (a stage that is one part of a schedule shared by several stages).
    step:   multiplied by `gamma` at each milestone (a fraction of `epochs`), per epoch.
    """
    total = max(1, steps_per_epoch * epochs)
    warmup = int(round(warmup_epochs * steps_per_epoch))
    a, b = span
    top = 0.5 * (1.0 + math.cos(math.pi * a)) if schedule == "cosine" else 1.0
    if step < warmup:
        return top * (step + 1) / warmup
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * (a + (b - a) * progress)))
    if schedule == "step":
        epoch = step // max(1, steps_per_epoch)
        passed = sum(1 for m in milestones if epoch >= int(round(m * epochs)))
        return gamma**passed
    if schedule == "constant":
        return 1.0
    raise ConfigError(f"unknown lr schedule '{schedule}'", f"choose one of {', '.join(SCHEDULES)}")


def check_schedule(schedule: str, milestones: Sequence[float], warmup_epochs: float, epochs: int) -> None:
    """Validate schedule options up front, so a typo fails before any training."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown lr schedule '{schedule}'", f"choose one of {', '.join(SCHEDULES)}")
    if any(not 0.0 < m < 1.0 for m in milestones) or list(milestones) != sorted(milestones):
        raise ConfigError(f"step milestones must be increasing fractions of the epochs in (0, 1), got {list(milestones)}", "e.g. 0.5,0.75")
    if warmup_epochs < 0 or warmup_epochs >= max(epochs, 1):
        raise ConfigError(f"warmup_epochs must be in [0, epochs), got {warmup_epochs}", f"use fewer than {epochs} warmup epochs")


def make_scheduler(optimizer, *, steps_per_epoch: int, epochs: int, schedule: str, warmup_epochs: float,
                   milestones: Sequence[float], gamma: float, span: Sequence[float] = (0.0, 1.0)):
    """A LambdaLR stepped once per optimizer step; its state_dict is plain numbers (weights_only-safe)."""
    from torch.optim.lr_scheduler import LambdaLR

    def factor(step: int) -> float:
        return lr_factor(step, steps_per_epoch=steps_per_epoch, epochs=epochs, schedule=schedule,
                         warmup_epochs=warmup_epochs, milestones=milestones, gamma=gamma, span=span)

    return LambdaLR(optimizer, factor)

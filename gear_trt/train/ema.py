"""An exponential moving average (EMA) of the weights: what a stage evaluates, saves and hands on when it is on.

Why an average: the weights at the end of a short, noisy schedule sit somewhere in a basin; averaging the
last few hundred steps' weights lands nearer its middle (Polyak averaging; timm's ModelEmaV2). BatchNorm's
running statistics are averaged with the weights so the two stay consistent; integer buffers (batch counts)
are copied.

The decay warms up as min(decay, (1 + step) / (10 + step)): a stage's first steps, whose starting weights may
be random or were trained for another function (right after growth), are forgotten quickly instead of
weighing on the average for thousands of steps. The step is the stage's global step, so a resumed stage
continues exactly.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        # state_dict() tensors share storage with the modules', so these lists stay live (load_state_dict copies in place)
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self._averaged = [a for a, _ in pairs if a.is_floating_point()]
        self._current = [b for a, b in pairs if a.is_floating_point()]
        self._copied = [(a, b) for a, b in pairs if not a.is_floating_point()]

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the average toward the training model's current weights (call after each optimizer step)."""
        if self._averaged:
            torch._foreach_lerp_(self._averaged, self._current, 1.0 - self.decay_at(step))
        for a, b in self._copied:
            a.copy_(b)

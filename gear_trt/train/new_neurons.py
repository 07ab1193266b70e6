"""The neurons growth added, and their learning-rate warm-up in the first stage after growth.

Why: a grown layer feeds its consumers more input channels at its siblings' scale, so under SGD one step
changes each consumer's output by about (old + new channels) / old times as much as before growth: new
fan-outs starting at 0 learn at full rate on a few batches and pull the trained function with them (the
grown net fell 0.03-0.25 nats behind the backbone in its first epoch; with the new entries frozen it
matched it to 3e-4). Ramping the gradient of the added entries from 0 to 1 over the first epochs after
growth gives the trained weights time to take the new channels in; a per-neuron learning rate in the
spirit of Variance Transfer's rebalancing (Yuan et al. 2023), applied as a gradient factor so one
optimiser and its state stay as they are.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from gear_trt.spec import ModelSpec


def added_entries(model: nn.Module, before: ModelSpec) -> dict[str, Tensor]:
    """{parameter name: bool mask} of the entries of `model` beyond the shapes of the network of `before`
    (the new channels' fan-in, BatchNorm and fan-out; split copies count as added)."""
    from gear_trt.models import build_model

    with torch.device("meta"):
        shapes = {name: p.shape for name, p in build_model(before).named_parameters()}
    masks = {}
    for name, p in model.named_parameters():
        old = shapes.get(name)
        if old is None or old == p.shape:
            continue
        mask = torch.ones(p.shape, dtype=torch.bool, device=p.device)
        mask[tuple(slice(0, n) for n in old)] = False
        masks[name] = mask
    return masks


class NewNeuronWarmup:
    """Scales the gradient of the added entries by step / (epochs x steps_per_epoch) until that reaches 1.
    Called after backward with the stage's global step (epoch x steps + batch), so a resumed stage
    continues exactly."""

    def __init__(self, model: nn.Module, masks: Mapping[str, Tensor], epochs: float, steps_per_epoch: int) -> None:
        self.params = [(p, masks[name].to(p.device)) for name, p in model.named_parameters() if name in masks]
        self.total = epochs * steps_per_epoch

    def __call__(self, step: int) -> None:
        if step >= self.total:
            return
        ramp = step / self.total
        for p, mask in self.params:
            if p.grad is not None:
                p.grad.mul_(torch.where(mask, ramp, 1.0))

"""A fixed, pre-corrupted test subset: robust accuracy cheap enough to measure after every epoch.

The full sweep (sweep.py) evaluates every image under all 15 corruptions x severities: right for a
stage's final number, too slow to repeat each epoch. The probe corrupts each image once, with one
(corruption, severity) pair drawn from a balanced cycle, so N images cost N forward passes and
every corruption and severity is equally represented; the same images clean give the per-epoch
clean accuracy (so a large test set is scored in full only at stage ends). Its accuracy tracks the sweep's mean
corruption accuracy (same corruptions, same severities, fewer images) and is what time-to-accuracy
curves plot. Built once per run; deterministic in `seed`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import torch

from gear_trt.corruptions.core import corrupt
from gear_trt.corruptions.params import CORRUPTIONS
from gear_trt.corruptions.sweep import count_correct


@dataclasses.dataclass(frozen=True)
class CorruptedProbe:
    clean: torch.Tensor  # uint8 [N, H, W, 3], the test images as they are
    images: torch.Tensor  # uint8 [N, H, W, 3], the same images, each corrupted once
    labels: torch.Tensor  # int64 [N]
    pairs: tuple[tuple[str, int], ...]  # (corruption, severity) of each image

    def __len__(self) -> int:
        return len(self.labels)


def corrupted_probe(images: torch.Tensor, labels: torch.Tensor, *, severities: Sequence[int], seed: int = 0,
                    preset: str = "cifar") -> CorruptedProbe:
    """Corrupt image k with the k-th pair of a seeded shuffle of the cycle over CORRUPTIONS x severities."""
    cycle = [(name, int(s)) for name in CORRUPTIONS for s in severities]
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=gen)  # which image gets which pair: independent of class order
    pairs: list[tuple[str, int]] = [("", 0)] * len(images)
    for rank, k in enumerate(order.tolist()):
        pairs[k] = cycle[rank % len(cycle)]
    out = images.clone()
    for name, severity in sorted(set(pairs)):
        index = torch.tensor([k for k, p in enumerate(pairs) if p == (name, severity)])
        # noise is seeded per image index (core.corrupt): the probe is the same whichever batch order
        out[index] = corrupt(images[index], name, severity, seed=seed, preset=preset, indices=index)
    return CorruptedProbe(images.clone(), out, labels.clone().long(), tuple(pairs))


def probe_accuracy(predict: Callable[[torch.Tensor], torch.Tensor], probe: CorruptedProbe, batch_size: int = 500,
                   *, corrupted: bool = True) -> float:
    """Top-1 accuracy of `predict` (uint8 NHWC batch -> logits) on the probe's corrupted (or clean) images."""
    images = probe.images if corrupted else probe.clean
    correct = sum(count_correct(predict, images[i: i + batch_size], probe.labels[i: i + batch_size])
                  for i in range(0, len(probe), batch_size))
    return correct / max(1, len(probe))

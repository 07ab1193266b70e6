"""sweep(): accuracy of a predictor on clean images and under every corruption and severity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Union  # noqa: UP035 - runtime alias below must work on Python 3.8

import numpy as np
import torch

from gear_trt.corruptions.core import check_name, check_preset, check_severity, corrupt
from gear_trt.corruptions.metrics import CorruptionResults
from gear_trt.corruptions.params import CORRUPTIONS, EXTRAS, SEVERITIES
from gear_trt.errors import ConfigError, DataError

Predict = Callable[[torch.Tensor], Union[torch.Tensor, np.ndarray]]  # typing.Union: evaluated at import


def subset_indices(n: int, subset: int | Sequence[int] | None) -> torch.Tensor:
    """All indices, `subset` evenly spaced ones (class-balanced on class-sorted sets), or the given ones."""
    if subset is None:
        return torch.arange(n)
    if isinstance(subset, (int, np.integer)):
        if subset <= 0:
            raise ConfigError(f"subset must be positive, got {subset}", "pass a number of images or None for all")
        if subset >= n:
            return torch.arange(n)
        return torch.from_numpy(np.linspace(0, n - 1, int(subset)).round().astype(np.int64))
    index = torch.as_tensor(list(subset), dtype=torch.int64)
    if len(index) and (index.min() < 0 or index.max() >= n):
        raise ConfigError("subset indices out of range", f"use indices in [0, {n})")
    return index


def count_correct(predict: Predict, images: torch.Tensor, labels: torch.Tensor) -> int:
    with torch.no_grad():
        logits = predict(images)
    logits = torch.as_tensor(logits)
    if logits.dim() != 2 or logits.shape[0] != len(labels):
        raise DataError(f"predict returned shape {tuple(logits.shape)} for {len(labels)} images",
                        "return logits of shape [batch, classes]")
    return int((logits.argmax(dim=1).cpu() == labels.cpu()).sum())


def sweep(
    predict: Predict,
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    *,
    preset: str = "cifar",
    severities: Sequence[int] = SEVERITIES,
    corruptions: Sequence[str] = CORRUPTIONS,
    batch_size: int = 500,
    seed: int = 0,
    subset: int | Sequence[int] | None = None,
    model: str = "",
    progress: bool = True,
) -> CorruptionResults:
    """Evaluate `predict` (uint8 NHWC batch -> logits [B, classes]) on the clean images and on each
    corruption x severity, generating the corrupted images batch by batch on the images' device.

    Names in `corruptions` that are extras go to results.extras, the rest to results.acc;
    pass ALL_CORRUPTIONS to get both. `subset` (a count, spread evenly, or explicit indices)
    evaluates part of the set; the corrupted images stay those of the full sweep (each image is
    seeded by its index in `images`), and the clean accuracy is measured on the same part.
    """
    from tqdm.auto import tqdm

    check_preset(preset)
    for name in corruptions:
        check_name(name)
    for s in severities:
        check_severity(s)
    if batch_size <= 0:
        raise ConfigError(f"batch_size must be positive, got {batch_size}", "pass e.g. batch_size=500")
    images = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long()
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise DataError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {tuple(images.shape)}",
                        "pass an ImageSet's .images")
    if len(labels) != len(images):
        raise DataError(f"{len(images)} images but {len(labels)} labels", "pass one label per image")
    index = subset_indices(len(images), subset)
    if len(index) == 0:
        raise DataError("no images to evaluate", "pass a non-empty image set")
    batches = [index[i: i + batch_size] for i in range(0, len(index), batch_size)]
    total_steps = len(batches) * (1 + len(corruptions) * len(severities))
    bar = tqdm(total=total_steps, desc="corruptions", unit="batch", disable=not progress, leave=False)

    def accuracy(name: str | None, severity: int) -> float:
        correct = 0
        for b in batches:
            x = images[b.to(images.device)]
            if name is not None:
                x = corrupt(x, name, severity, seed=seed, preset=preset, indices=b)
            correct += count_correct(predict, x, labels[b])
            bar.update(1)
        return correct / len(index)

    try:
        bar.set_postfix_str("clean")
        results = CorruptionResults(clean_acc=accuracy(None, 0), preset=preset, seed=seed, n_images=len(index),
                                    model=model, source="generated")
        for name in corruptions:
            table = results.extras if name in EXTRAS else results.acc
            table[name] = {}
            for s in severities:
                bar.set_postfix_str(f"{name} {s}")
                table[name][int(s)] = accuracy(name, int(s))
    finally:
        bar.close()
    return results

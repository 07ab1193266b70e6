"""The published CIFAR-10-C / CIFAR-100-C files, for users who have them.

Layout of the official release: one <corruption>.npy per corruption, uint8 [5 * n, 32, 32, 3]
stored severity-major (rows [(s - 1) * n, s * n) are severity s; n = 10,000 test images), and
labels.npy [5 * n] (the test labels repeated 5 times).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from gear_trt.corruptions.core import ALL_CORRUPTIONS, check_severity
from gear_trt.corruptions.metrics import CorruptionResults
from gear_trt.corruptions.params import EXTRAS, SEVERITIES
from gear_trt.errors import DataError

_FIX = "pass the folder of the official CIFAR-10-C / CIFAR-100-C release (<corruption>.npy files and labels.npy)"


def available(root: str | os.PathLike) -> list[str]:
    """The corruptions (in benchmark order) whose .npy file is in `root`."""
    folder = Path(root)
    if not folder.is_dir():
        raise DataError(f"CIFAR-C folder {folder} does not exist", _FIX)
    return [name for name in ALL_CORRUPTIONS if (folder / f"{name}.npy").is_file()]


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} is missing", _FIX)
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} is not a readable .npy file: {exc}", _FIX) from None


def load_cifar_c(root: str | os.PathLike, corruption: str, severity: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 32, 32, 3], labels int64 [n]) of one corruption at one severity, or of
    all five severities stacked (severity-major) when severity is None. Memory-mapped."""
    folder = Path(root)
    if corruption not in ALL_CORRUPTIONS:
        raise DataError(f"unknown corruption {corruption!r}", f"use one of: {', '.join(ALL_CORRUPTIONS)}")
    images = _load(folder / f"{corruption}.npy")
    labels = _load(folder / "labels.npy")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"{folder / corruption}.npy holds {images.dtype} {images.shape}, not uint8 [N, H, W, 3]", _FIX)
    if len(images) != len(labels) or len(images) % len(SEVERITIES):
        raise DataError(f"{corruption}.npy has {len(images)} images and labels.npy {len(labels)} labels; "
                        "expected the same count, a multiple of 5", _FIX)
    if severity is None:
        return images, np.asarray(labels, dtype=np.int64)
    check_severity(severity)
    n = len(images) // len(SEVERITIES)
    block = slice((int(severity) - 1) * n, int(severity) * n)
    return images[block], np.asarray(labels[block], dtype=np.int64)


def evaluate_cifar_c(
    predict: Callable[[torch.Tensor], torch.Tensor | np.ndarray],
    root: str | os.PathLike,
    *,
    clean: tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray] | None = None,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    model: str = "",
    progress: bool = True,
) -> CorruptionResults:
    """Accuracy of `predict` (uint8 NHWC batch -> logits) on the official files in `root`.

    clean: (images, labels) of the clean test set for clean_acc (the release has none; without it
    clean_acc is None and relative mCE cannot be computed). corruptions: default all found.
    """
    from tqdm.auto import tqdm

    from gear_trt.corruptions.sweep import count_correct

    names = list(corruptions) if corruptions is not None else available(root)
    if not names:
        raise DataError(f"no corruption .npy files in {root}", _FIX)
    results = CorruptionResults(clean_acc=None, preset="cifar", source="official-npy", model=model)
    if clean is not None:
        images = torch.as_tensor(np.asarray(clean[0])) if not isinstance(clean[0], torch.Tensor) else clean[0]
        labels = torch.as_tensor(np.asarray(clean[1])).long()
        correct = sum(count_correct(predict, images[i: i + batch_size].to(device), labels[i: i + batch_size])
                      for i in range(0, len(images), batch_size))
        results.clean_acc = correct / len(images)
    bar = tqdm(total=len(names) * len(severities), desc="CIFAR-C", unit="set", disable=not progress, leave=False)
    try:
        for name in names:
            table = results.extras if name in EXTRAS else results.acc
            table[name] = {}
            for s in severities:
                images_np, labels_np = load_cifar_c(root, name, s)
                correct = 0
                for i in range(0, len(images_np), batch_size):
                    batch = torch.from_numpy(np.array(images_np[i: i + batch_size])).to(device)  # copy out of the memory map
                    correct += count_correct(predict, batch, torch.from_numpy(labels_np[i: i + batch_size]))
                table[name][int(s)] = correct / len(images_np)
                results.n_images = len(images_np)
                bar.update(1)
    finally:
        bar.close()
    return results

"""Accuracy of a Runner on an ImageSet: the deployment preprocessing, then batched inference.

Images are uint8 NHWC (ImageSet); the runner takes float32 NCHW normalised by the metadata's rule
(gear_trt.artifacts.preprocess): resize (bilinear, half-pixel, no antialias) only if the size differs, then
(pixel * scale - mean[c]) / std[c].
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import torch

from gear_trt.artifacts.preprocess import preprocess_images
from gear_trt.errors import DataError

if TYPE_CHECKING:
    from gear_trt.backends.base import Runner
    from gear_trt.data.imageset import ImageSet


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "correct": self.correct, "total": self.total}


def predict_logits(runner: "Runner", images: torch.Tensor, *, batch_size: int = 256) -> np.ndarray:
    """float32 [N, classes] logits of uint8 NHWC `images`, in batches the runner accepts."""
    pre = runner.meta.preprocess
    limit = runner.max_batch or batch_size
    step = max(1, min(batch_size, limit))
    outs = [runner.infer(preprocess_images(images[i : i + step], pre)) for i in range(0, len(images), step)]
    return np.concatenate(outs) if outs else np.zeros((0, len(runner.meta.classes)), np.float32)


def make_predict(runner: "Runner", *, batch_size: int = 256) -> Callable[[torch.Tensor], torch.Tensor]:
    """A predict(images uint8 NHWC) -> logits tensor function, the form corruption sweeps take."""

    def predict(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(predict_logits(runner, images, batch_size=batch_size))

    return predict


def spread_subset(ds: "ImageSet", count: Optional[int]) -> "ImageSet":
    """`count` evenly spaced images of `ds` (class-balanced when the set is sorted by class); all if None."""
    if count is None or count >= len(ds):
        return ds
    if count < 1:
        raise DataError(f"asked for {count} images", "pass a positive --limit")
    return ds.subset(np.linspace(0, len(ds) - 1, count).round().astype(np.int64).tolist())


def clean_accuracy(runner: "Runner", ds: "ImageSet", *, batch_size: int = 256, limit: Optional[int] = None, progress: bool = False) -> AccuracyResult:
    """Top-1 accuracy of `runner` on `ds` (on `limit` evenly spaced images when given)."""
    ds = spread_subset(ds, limit)
    images, labels = ds.images, ds.labels
    if len(runner.meta.classes) != len(ds.classes):
        raise DataError(f"the model has {len(runner.meta.classes)} classes, the data {len(ds.classes)}", "evaluate on the data set the model was trained for")
    correct = 0
    step = max(1, min(batch_size, runner.max_batch or batch_size))
    starts = range(0, len(images), step)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="accuracy", unit="batch", leave=False)
    for i in starts:
        logits = runner.infer(preprocess_images(images[i : i + step], runner.meta.preprocess))
        correct += int((torch.from_numpy(np.asarray(logits)).argmax(1) == labels[i : i + step].cpu()).sum())
    return AccuracyResult(correct, len(images))


# Corruption sweeps: "subset" is a quick robustness estimate, "full" the whole benchmark.
CORRUPTION_MODES: dict[str, dict[str, Any]] = {
    "none": {},
    "subset": {"severities": (1, 3, 5), "subset": 500},
    "full": {"severities": (1, 2, 3, 4, 5), "subset": None},
}


def corruptions_available() -> bool:
    try:
        import gear_trt.corruptions  # noqa: F401
    except ImportError:
        return False
    return True


def corruption_accuracy(runner: "Runner", ds: "ImageSet", mode: str = "subset", *, seed: int = 0, batch_size: int = 250,
                        preset: Optional[str] = None, progress: bool = False) -> Optional[dict[str, Any]]:
    """The corruption sweep of `runner` on `ds` (gear_trt.corruptions), or None when mode is "none" or
    the corruption suite is not installed. Returns CorruptionResults.to_dict() plus "mean_corruption_acc"."""
    from gear_trt.errors import ConfigError

    if mode not in CORRUPTION_MODES:
        raise ConfigError(f"unknown corruption mode {mode!r}", f"choose one of {', '.join(CORRUPTION_MODES)}")
    if mode == "none" or not corruptions_available():
        return None
    from gear_trt.corruptions import sweep

    settings = CORRUPTION_MODES[mode]
    preset = preset or ("cifar" if ds.images.shape[1] <= 32 else "tinyimagenet")
    results = sweep(make_predict(runner, batch_size=batch_size), ds.images, ds.labels, preset=preset, severities=settings["severities"],
                    batch_size=batch_size, seed=seed, subset=settings["subset"], model=str(runner.path or ""), progress=progress)
    return {**results.to_dict(), "mean_corruption_acc": results.mean_corruption_acc, "mode": mode}

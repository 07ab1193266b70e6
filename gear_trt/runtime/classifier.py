"""Classifier: preprocessing (gear_trt.artifacts) + a backends Runner + top-k (runtime.postprocess)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

from gear_trt.artifacts.meta import DeployMeta
from gear_trt.artifacts.preprocess import Images, preprocess
from gear_trt.backends import load_runner
from gear_trt.choices import CHECKPOINT_SUFFIXES
from gear_trt.errors import ConfigError
from gear_trt.runtime.postprocess import softmax, topk_indices

if TYPE_CHECKING:
    from gear_trt.backends.base import Runner

BACKENDS = ("auto", "onnxruntime", "tensorrt")


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Results for N images. Row i belongs to image i; columns of the top-k arrays are best first."""

    indices: np.ndarray  # [N, k] int64 class indices
    scores: np.ndarray  # [N, k] float32 softmax probabilities of those classes
    classes: list[list[str]]  # [N][k] class names
    probabilities: np.ndarray  # [N, num_classes] float32 softmax
    logits: np.ndarray  # [N, num_classes] float32, as the model returned them

    @property
    def labels(self) -> list[str]:
        """The top-1 class name of each image."""
        return [row[0] for row in self.classes]

    def __len__(self) -> int:
        return int(self.indices.shape[0])


class Classifier:
    """An image classifier ready to run: an active Runner and its metadata (preprocessing, classes)."""

    def __init__(self, runner: "Runner") -> None:
        self.runner = runner if runner.is_active else runner.activate()

    @property
    def path(self) -> Optional[Path]:
        return self.runner.path

    @property
    def meta(self) -> DeployMeta:
        return self.runner.meta

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes

    @property
    def input_size(self) -> int:
        return self.meta.preprocess.input_size

    @property
    def backend_name(self) -> str:
        return self.runner.backend

    def preprocess(self, images: Images, *, color: str = "RGB") -> np.ndarray:
        """uint8 images -> the float32 NCHW batch the model takes (the metadata's rule)."""
        return preprocess(images, self.meta.preprocess, color=color)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW batch (any size: split into the batches the model takes) -> float32 [N, num_classes] logits."""
        step = self.runner.max_batch
        if not step or len(x) <= step:
            return self.runner.infer(x)
        return np.concatenate([self.runner.infer(x[i : i + step]) for i in range(0, len(x), step)])

    def predict(self, images: Images, *, k: int = 1, color: str = "RGB", batch_size: Optional[int] = None) -> Prediction:
        """Classify uint8 images: one HxWx3, an NxHxWx3 batch, or a list of HxWx3 of any sizes.

        `color` is the order of the given channels ("BGR" for OpenCV frames). Images of another
        size are resized by the metadata's rule. `batch_size` bounds the batch sent to the backend.
        """
        x = self.preprocess(images, color=color)
        step = x.shape[0] if batch_size is None else int(batch_size)
        if step < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}", "pass a positive batch_size, or None for one batch")
        logits = np.concatenate([self.infer(x[i : i + step]) for i in range(0, x.shape[0], step)])
        idx = topk_indices(logits, k)
        probs = softmax(logits)
        names = [[self.classes[j] for j in row] for row in idx.tolist()]
        return Prediction(indices=idx, scores=np.take_along_axis(probs, idx, axis=1), classes=names, probabilities=probs, logits=logits)

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Classifier({str(self.path)!r}, backend={self.backend_name!r}, classes={len(self.classes)}, input={self.input_size}x{self.input_size})"


def load(
    path: Union[str, Path],
    *,
    backend: str = "auto",
    meta: Optional[DeployMeta] = None,
    num_threads: Optional[int] = None,
    providers: Optional[Sequence[str]] = None,
    device: int = 0,
    require_same_gpu: bool = True,
) -> Classifier:
    """Load an ONNX file or a TensorRT engine (with its `<engine>.json` sidecar) as a Classifier.

    backend: "auto" picks onnxruntime for .onnx files and for sidecars saying
    "backend": "onnxruntime", TensorRT otherwise. `meta` overrides the stored metadata (for ONNX
    files exported elsewhere). `num_threads`/`providers` go to onnxruntime; `device` and
    `require_same_gpu` to TensorRT.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown runtime backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    if Path(path).suffix.lower() in CHECKPOINT_SUFFIXES:
        raise ConfigError(f"{path} is a training checkpoint; the runtime runs exported models",
                          "export it first: `gear-trt export CHECKPOINT` (ONNX), then `gear-trt build-engine` for TensorRT")
    if meta is not None:  # metadata given by the app gets the same checks as stored metadata
        meta = DeployMeta.from_dict(meta.to_dict(), "the meta argument")
    runner = load_runner(path, backend=backend, device=device, threads=num_threads, meta=meta, require_same_gpu=require_same_gpu,
                         providers=list(providers or ["CPUExecutionProvider"]))
    return Classifier(runner)

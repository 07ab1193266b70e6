"""Classifier: a loaded model plus its metadata; predict(images) does preprocessing, inference, top-k."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence, Union

import numpy as np

from gear_trt.deploy_meta import DeployMeta
from gear_trt.errors import ArtifactError, ConfigError
from gear_trt.runtime.metadata import parse_meta, read_sidecar, sidecar_path, verify_artifact_hash
from gear_trt.runtime.postprocess import softmax, topk_indices
from gear_trt.runtime.preprocess import Images, preprocess

BACKENDS = ("auto", "onnxruntime", "tensorrt")


class Backend(Protocol):
    name: str

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


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
    """An image classifier ready to run: metadata (preprocessing, classes) + a backend."""

    def __init__(self, path: Path, meta: DeployMeta, backend: Backend, sidecar: Optional[dict[str, Any]] = None) -> None:
        self.path = path
        self.meta = meta
        self.backend = backend
        self.sidecar = sidecar or {}

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes

    @property
    def input_size(self) -> int:
        return self.meta.preprocess.input_size

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def preprocess(self, images: Images, *, color: str = "RGB") -> np.ndarray:
        """uint8 images -> the float32 NCHW batch the model takes (the metadata's rule)."""
        return preprocess(images, self.meta.preprocess, color=color)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """float32 NCHW batch -> float32 [N, num_classes] logits."""
        s = self.input_size
        if x.dtype != np.float32 or x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ConfigError(f"infer() takes float32 [N, 3, {s}, {s}], got {x.dtype} {tuple(x.shape)}", "use predict() for uint8 images")
        logits = np.asarray(self.backend.run(np.ascontiguousarray(x)), dtype=np.float32)
        if logits.ndim != 2 or logits.shape != (x.shape[0], len(self.classes)):
            raise ArtifactError(
                f"{self.path}: the model returned shape {logits.shape}, expected ({x.shape[0]}, {len(self.classes)}) for {len(self.classes)} classes",
                "re-export the model so its metadata matches it",
            )
        return logits

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
        self.backend.close()

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
    path = Path(path)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown runtime backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    if path.suffix.lower() == ".json":
        raise ConfigError(f"{path} is a metadata sidecar", f"load the model file beside it ({path.with_suffix('')})")
    if not path.is_file():
        raise ArtifactError(f"model file not found: {path}", "check the path; export or build the model first")
    if meta is not None:  # user-given metadata gets the same checks as stored metadata
        meta = parse_meta(meta.to_json(), "the meta argument")
    is_onnx = path.suffix.lower() == ".onnx"
    sidecar: dict[str, Any] = {}
    if not is_onnx or sidecar_path(path).is_file():  # an engine (or onnxruntime's optimised .ort.onnx): its sidecar decides
        found, sidecar = read_sidecar(path)
        verify_artifact_hash(path, sidecar)
        if sidecar.get("onnxruntime"):  # an optimised model: made by this onnxruntime on this CPU? (as `gear-trt eval` checks)
            from gear_trt.backends.onnxrt import ort_environment, validate_ort_sidecar

            validate_ort_sidecar(sidecar, **ort_environment(), where=str(path))
        meta = meta or found
    if backend == "auto":
        backend = "onnxruntime" if is_onnx or sidecar.get("backend") == "onnxruntime" else "tensorrt"

    if backend == "tensorrt":
        if is_onnx:
            raise ConfigError(f"{path} is an ONNX file, not a TensorRT engine", "build an engine with `gear-trt build-engine`, or use backend='onnxruntime'")
        from gear_trt.runtime.trt_backend import TensorRTBackend

        assert meta is not None
        return Classifier(path, meta, TensorRTBackend(path, meta, sidecar, device=device, require_same_gpu=require_same_gpu), sidecar)

    from gear_trt.runtime.ort_backend import OnnxRuntimeBackend

    ort_backend = OnnxRuntimeBackend(path, num_threads=num_threads, providers=providers)
    if meta is None:
        text = ort_backend.embedded_metadata()
        if text is not None:
            meta = parse_meta(text, str(path))
        elif sidecar_path(path).is_file():
            meta, sidecar = read_sidecar(path)
            verify_artifact_hash(path, sidecar)
        else:
            raise ArtifactError(
                f"{path} carries no gear-trt metadata (no 'gear_trt' entry in its metadata_props)",
                "export it with gear-trt, or pass meta=DeployMeta(...) to load()",
            )
    ort_backend.bind(meta)
    return Classifier(path, meta, ort_backend, sidecar)

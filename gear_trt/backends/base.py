"""Runner: one interface for torch, onnxruntime and TensorRT (Polygraphy's runner pattern).

The base class owns what every backend must do the same way: input validation, the active/inactive
life cycle (a context manager) and timing. A backend implements only `_activate`, `_infer` and
`_deactivate`:

    with load_runner("run/engines/backbone.int8.engine") as runner:
        logits = runner.infer(x)            # float32 [N, 3, S, S] -> float32 [N, classes]
        runner.last_latency_ms              # wall time of that call, host to host

Timing is wall-clock around `_infer`, so it includes what the backend does to move data (for
TensorRT the host->device and device->host copies and the stream synchronisation).
"""

from __future__ import annotations

import abc
import time
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import numpy as np

from gear_trt.artifacts.meta import DeployMeta
from gear_trt.errors import ArtifactError, ConfigError

Array = Any  # np.ndarray or torch.Tensor (torch is optional for the onnxruntime path)
MAX_TIMINGS = 100_000  # a bound on the latency list of a long-lived runner


class Runner(abc.ABC):
    """A loaded model that maps normalised float32 NCHW batches to float32 logits."""

    backend: ClassVar[str] = ""
    takes_torch: ClassVar[bool] = False  # _infer receives torch tensors (else numpy arrays)

    def __init__(self, meta: DeployMeta, *, path: Optional[Union[str, Path]] = None, max_batch: Optional[int] = None) -> None:
        self.meta = meta
        self.path = Path(path) if path is not None else None
        self.max_batch = max_batch  # None: any batch size
        self.fixed_batch: Optional[int] = None  # a model made for exactly this batch: smaller batches are zero-padded
        self.is_active = False
        self.latencies_ms: list[float] = []

    # --- life cycle ---------------------------------------------------------------------------
    def activate(self) -> "Runner":
        if self.is_active:
            raise ConfigError(f"{self.name} is already active", "activate a runner once (or use it as a context manager)")
        self._activate()
        self.is_active = True
        return self

    def deactivate(self) -> None:
        if not self.is_active:
            return
        try:
            self._deactivate()
        finally:
            self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def __del__(self) -> None:  # release sessions/engines even if the caller forgot
        try:
            if getattr(self, "is_active", False):
                self.deactivate()
        except Exception:
            pass

    # --- inference ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        where = self.path.name if self.path is not None else "in-memory model"
        return f"{self.backend} runner ({where})"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        s = self.meta.preprocess.input_size
        return (3, s, s)

    @property
    def num_classes(self) -> int:
        return len(self.meta.classes)

    @property
    def precision(self) -> str:
        return self.meta.precision

    def validate(self, x: Array) -> Array:
        """Check a batch before it reaches the backend; returns it as the backend's array type."""
        is_torch = not isinstance(x, np.ndarray)
        if is_torch:
            if not type(x).__module__.startswith("torch"):
                raise ConfigError(f"{self.name}: input must be a numpy array or torch tensor, got {type(x).__name__}", "pass float32 [N, 3, H, W]")
            import torch

            ok = x.dtype == torch.float32
        else:
            ok = x.dtype == np.float32  # comparing dtypes, not their names: str(dtype) costs microseconds per call
        if not ok:
            raise ConfigError(f"{self.name}: input dtype is {str(x.dtype).replace('torch.', '')}, expected float32",
                              "normalise uint8 images with the model's preprocessing first (gear_trt.artifacts.preprocess)")
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[1:] != self.input_shape:
            raise ConfigError(f"{self.name}: input shape {shape}, expected [N, {', '.join(map(str, self.input_shape))}]", "pass a normalised NCHW batch of the model's input size")
        if shape[0] < 1 or (self.max_batch is not None and shape[0] > self.max_batch):
            raise ConfigError(f"{self.name}: batch of {shape[0]} is outside 1..{self.max_batch or 'any'}",
                              "split the batch, or rebuild the engine with a larger --max-batch")
        if is_torch and not self.takes_torch:
            return np.ascontiguousarray(x.detach().cpu().numpy())
        if not is_torch and self.takes_torch:
            import torch

            return torch.from_numpy(np.ascontiguousarray(x))
        return x if is_torch else np.ascontiguousarray(x)

    def infer(self, x: Array) -> np.ndarray:
        """float32 [N, 3, S, S] -> float32 [N, classes] logits; the call's wall time goes to latencies_ms."""
        if not self.is_active:
            raise ConfigError(f"{self.name} is not active", "use it as a context manager (`with runner:`) or call activate() first")
        x = self.validate(x)
        n = x.shape[0]
        if self.fixed_batch is not None and n < self.fixed_batch:
            x = self._pad(x, self.fixed_batch)
        start = time.perf_counter()
        out = self._infer(x)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        if len(self.latencies_ms) >= MAX_TIMINGS:
            del self.latencies_ms[: MAX_TIMINGS // 2]
        self.latencies_ms.append(elapsed_ms)
        out = np.asarray(out)
        if out.shape != (x.shape[0], self.num_classes):
            raise ArtifactError(f"{self.name}: output shape {out.shape}, expected ({x.shape[0]}, {self.num_classes})", "the model does not match its metadata; re-export it")
        return out[:n].astype(np.float32, copy=False)

    @staticmethod
    def _pad(x: Array, batch: int) -> Array:
        if isinstance(x, np.ndarray):
            return np.concatenate([x, np.zeros((batch - x.shape[0],) + x.shape[1:], x.dtype)])
        import torch

        return torch.cat([x, x.new_zeros((batch - x.shape[0],) + tuple(x.shape[1:]))])

    @property
    def last_latency_ms(self) -> Optional[float]:
        return self.latencies_ms[-1] if self.latencies_ms else None

    def reset_timing(self) -> None:
        self.latencies_ms.clear()

    def describe(self) -> dict[str, Any]:
        """What the benchmark table records about this runner (backend, precision, artifact, options)."""
        return {"backend": self.backend, "precision": self.precision, "path": str(self.path) if self.path else None, "max_batch": self.max_batch}

    # --- what a backend implements ---------------------------------------------------------------
    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, x: Array) -> Array: ...

    @abc.abstractmethod
    def _deactivate(self) -> None: ...

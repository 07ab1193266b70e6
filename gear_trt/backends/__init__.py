"""Runners for torch, onnxruntime and TensorRT behind one interface; `load_runner(path)` picks by artifact.

    .pt / .pth                  -> TorchRunner (a gear-trt checkpoint)
    .onnx                       -> OrtRunner (an exported model, or an optimised "engine" with a sidecar)
    .engine / .plan / .trt      -> TrtRunner (a TensorRT engine with its sidecar)

Backends load lazily: importing this package imports neither torch, onnxruntime nor tensorrt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from gear_trt.choices import CHECKPOINT_SUFFIXES, ONNX_SUFFIX, TENSORRT_SUFFIXES
from gear_trt.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    from gear_trt.backends.base import Runner

ONNX_SUFFIXES = (ONNX_SUFFIX,)
ENGINE_SUFFIXES = TENSORRT_SUFFIXES
BACKENDS = ("torch", "onnxruntime", "tensorrt")


def artifact_kind(path: Union[str, "os.PathLike[str]"]) -> str:
    """"checkpoint", "onnx" or "engine", from the file name."""
    suffix = Path(path).suffix.lower()
    for kind, suffixes in (("checkpoint", CHECKPOINT_SUFFIXES), ("onnx", ONNX_SUFFIXES), ("engine", ENGINE_SUFFIXES)):
        if suffix in suffixes:
            return kind
    raise ConfigError(f"cannot tell what {Path(path).name} is from its suffix {suffix!r}",
                      f"pass a checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}), an ONNX file (.onnx) or an engine ({', '.join(ENGINE_SUFFIXES)})")


def load_runner(path: Union[str, "os.PathLike[str]"], *, device: Optional[str] = None, threads: Optional[int] = None, **options: Any) -> "Runner":
    """The runner for the artifact at `path` (not yet active: use it as a context manager).

    device: torch "cpu"/"cuda", onnxruntime "cpu"/"cuda"/"tensorrt", TensorRT a CUDA index ("0").
    threads: CPU threads (torch, onnxruntime).
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist", "check the path")
    kind = artifact_kind(path)
    if kind == "checkpoint":
        from gear_trt.backends.torch_backend import TorchRunner

        return TorchRunner.from_checkpoint(path, device=device or "cpu", threads=threads)
    if kind == "onnx":
        from gear_trt.backends.onnxrt import OrtRunner

        return OrtRunner(path, device=device or "cpu", threads=threads, **options)
    from gear_trt.backends.tensorrt import TrtRunner

    return TrtRunner(path, device=int(device or 0))


def available_backends() -> dict[str, str]:
    """Backend name -> "" if usable here, else the reason it is not."""
    from gear_trt._deps import has_module

    status = {"torch": "" if has_module("torch") else "torch is not importable",
              "onnxruntime": "" if has_module("onnxruntime") else "onnxruntime is not importable"}
    try:
        from gear_trt.backends.tensorrt import tensorrt_status

        ok, why = tensorrt_status()
        status["tensorrt"] = "" if ok else why
    except Exception as exc:  # a broken TensorRT install must not break the CPU paths
        status["tensorrt"] = f"TensorRT failed to import ({type(exc).__name__}: {exc})"
    return status

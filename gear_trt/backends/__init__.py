"""Runners for torch, onnxruntime and TensorRT behind one interface; `load_runner(path)` picks by artifact.

    .pt / .pth                  -> TorchRunner (a gear-trt checkpoint)
    .onnx                       -> OrtRunner (an exported model, or an optimised "engine" with a sidecar)
    .engine / .plan / .trt      -> TrtRunner (a TensorRT engine with its sidecar), or OrtRunner when
                                   the sidecar says onnxruntime

Backends load lazily: importing this package imports neither torch, onnxruntime nor tensorrt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from gear_trt.artifacts.sidecar import read_sidecar, sidecar_path
from gear_trt.choices import CHECKPOINT_SUFFIXES, ONNX_SUFFIX, TENSORRT_SUFFIXES
from gear_trt.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    from gear_trt.artifacts.meta import DeployMeta
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


def load_runner(path: Union[str, "os.PathLike[str]"], *, backend: str = "auto", device: Union[str, int, None] = None, threads: Optional[int] = None,
                meta: Optional["DeployMeta"] = None, require_same_gpu: bool = True, **options: Any) -> "Runner":
    """The runner for the artifact at `path` (not yet active: use it as a context manager).

    backend: "auto" picks torch for a checkpoint, onnxruntime for an ONNX file or an engine whose
    sidecar names onnxruntime, TensorRT for other engines. An engine's sidecar is read once, here.
    device: torch "cpu"/"cuda", onnxruntime "cpu"/"cuda"/"tensorrt", TensorRT a CUDA index (0).
    threads: CPU threads (torch, onnxruntime). meta: metadata to use instead of the stored one
    (an ONNX file exported elsewhere). require_same_gpu: TensorRT (gear_trt.artifacts.compat).
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise ConfigError(f"{path} is a metadata sidecar", f"load the model file beside it ({path.with_suffix('')})")
    if backend not in ("auto", *BACKENDS):
        raise ConfigError(f"unknown backend {backend!r}", f"choose auto, {', '.join(BACKENDS)}")
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist", "check the path; export or build the model first")
    kind = artifact_kind(path)
    if kind == "checkpoint" or backend == "torch":
        if kind != "checkpoint" or backend not in ("auto", "torch"):
            raise ConfigError(f"{path.name} is a {kind}; the torch backend runs checkpoints and only they run on it",
                              "pass a checkpoint for torch, or an ONNX file or engine for onnxruntime / TensorRT")
        from gear_trt.backends.torch_backend import TorchRunner

        return TorchRunner.from_checkpoint(path, device=str(device or "cpu"), threads=threads)
    sidecar = read_sidecar(path) if kind == "engine" or sidecar_path(path).is_file() else None
    if backend == "auto":
        backend = "onnxruntime" if kind == "onnx" or (sidecar is not None and sidecar.backend == "onnxruntime") else "tensorrt"
    if backend == "onnxruntime":
        from gear_trt.backends.onnxrt import OrtRunner

        return OrtRunner(path, device=str(device or "cpu"), threads=threads, meta=meta, sidecar=sidecar, **options)
    if kind == "onnx":
        raise ConfigError(f"{path} is an ONNX file, not a TensorRT engine", "build an engine with `gear-trt build-engine`, or use the onnxruntime backend")
    from gear_trt.backends.tensorrt import TrtRunner

    return TrtRunner(path, device=int(device or 0), require_same_gpu=require_same_gpu, meta=meta, sidecar=sidecar)


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

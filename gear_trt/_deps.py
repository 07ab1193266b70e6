"""Optional, heavy dependencies imported lazily with an install hint instead of an ImportError."""

from __future__ import annotations

import importlib
from types import ModuleType

from gear_trt.errors import BackendUnavailable

_HINTS = {
    "tensorrt": "install TensorRT: on a Jetson it comes with JetPack (python3-libnvinfer); elsewhere `pip install tensorrt`",
    "modelopt": "`pip install 'gear-trt[modelopt]'` (NVIDIA ModelOpt)",
    "pynvml": "`pip install 'gear-trt[energy]'` (nvidia-ml-py)",
    "onnxscript": "`pip install 'gear-trt[dynamo]'` (needed by the dynamo ONNX exporter)",
    "jtop": "`sudo pip3 install -U jetson-stats` on the Jetson",
    "ray": "`pip install 'gear-trt[sweep]'` (Ray Tune), or run the trials one after another with --sequential",
}


def optional_import(name: str) -> ModuleType:
    """Import `name` or raise BackendUnavailable with the way to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = _HINTS.get(name.split(".")[0], f"`pip install {name}`")
        raise BackendUnavailable(f"optional dependency '{name}' is not importable: {exc}", hint) from exc


def has_module(name: str) -> bool:
    """True if `name` imports; never raises."""
    try:
        importlib.import_module(name)
    except Exception:
        return False
    return True

"""Checkpoint -> ONNX (with metadata and a parity check) -> fp16 / int8 Q/DQ ONNX.

    from gear_trt.export import export_checkpoint, to_fp16, to_int8_qdq
    fp32 = export_checkpoint("run/checkpoints/backbone.pt", "run/onnx/backbone.fp32.onnx")
    to_fp16(fp32, "run/onnx/backbone.fp16.onnx")
    to_int8_qdq(fp32, "run/onnx/backbone.int8.onnx", reader)   # reader: a CalibrationReader

Names load lazily so importing the package does not pull in torch or onnx.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "export_onnx": "onnx", "export_checkpoint": "onnx", "check_parity": "onnx", "ParityReport": "onnx",
    "to_fp16": "precision", "to_int8_qdq": "precision", "CalibrationReader": "precision",
    "qdq_summary": "precision", "PRECISIONS": "precision",
    "CalibrationManifest": "calibration", "make_manifest": "calibration", "load_manifest": "calibration",
    "calibration_reader": "calibration",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"gear_trt.export.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'gear_trt.export' has no attribute '{name}'")

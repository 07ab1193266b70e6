"""onnxruntime backend: an ONNX file (or an onnxruntime "engine") run on the CPU by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from gear_trt._deps import optional_import
from gear_trt.deploy_meta import METADATA_KEY, DeployMeta
from gear_trt.errors import ArtifactError


class OnnxRuntimeBackend:
    """Runs float32 NCHW batches through an onnxruntime InferenceSession."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, num_threads: Optional[int] = None, providers: Optional[Sequence[str]] = None) -> None:
        ort = optional_import("onnxruntime")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"onnxruntime cannot load {path}: {first}", "check the file is a complete ONNX model; re-export it") from exc
        self.path = path
        self.fixed_batch: Optional[int] = None

    def embedded_metadata(self) -> Optional[str]:
        """The "gear_trt" JSON stored in the ONNX file's metadata_props, if any."""
        return self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)

    def bind(self, meta: DeployMeta) -> None:
        """Check the model's I/O against the metadata (names, shapes, dtype) before any inference."""
        where = str(self.path)
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if meta.input_name not in inputs:
            raise ArtifactError(f"{where}: metadata names input {meta.input_name!r}, the model has {sorted(inputs)}", "re-export the model so the metadata matches it")
        if meta.output_name not in outputs:
            raise ArtifactError(f"{where}: metadata names output {meta.output_name!r}, the model has {sorted(outputs)}", "re-export the model so the metadata matches it")
        inp = inputs[meta.input_name]
        if inp.type != "tensor(float)":
            raise ArtifactError(f"{where}: input {inp.name!r} is {inp.type}, expected tensor(float)", "export the model with a float32 input")
        expected: list[Any] = list(meta.input_shape)
        shape = list(inp.shape)
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], expected[1:])):
            raise ArtifactError(f"{where}: input shape {shape} does not match the metadata's {expected}", "re-export the model so the metadata matches it")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        out_shape = list(outputs[meta.output_name].shape)
        if out_shape and isinstance(out_shape[-1], int) and out_shape[-1] != len(meta.classes):
            raise ArtifactError(
                f"{where}: the model outputs {out_shape[-1]} classes, the metadata lists {len(meta.classes)}",
                "re-export the model so the metadata matches it",
            )
        self.input_name, self.output_name = meta.input_name, meta.output_name

    def run(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if self.fixed_batch is None:
            return np.asarray(self.session.run([self.output_name], {self.input_name: x})[0])
        # A fixed-batch model: run full chunks, padding the last one with zeros.
        b = self.fixed_batch
        outs = []
        for start in range(0, n, b):
            chunk = x[start : start + b]
            if chunk.shape[0] < b:
                chunk = np.concatenate([chunk, np.zeros((b - chunk.shape[0],) + x.shape[1:], x.dtype)])
            outs.append(np.asarray(self.session.run([self.output_name], {self.input_name: chunk})[0]))
        return np.concatenate(outs)[:n]

    def close(self) -> None:
        self.session = None

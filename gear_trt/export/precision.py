"""Precision as an ONNX transform: fp32 ONNX -> fp16 ONNX, or -> INT8 Q/DQ ONNX.

fp16: every float tensor inside the graph becomes float16; inputs and outputs stay float32 behind
Cast nodes (keep_io_types), so callers and engines feed and read float32 whatever the precision.
This is the file TensorRT 11 (strongly typed, no FP16 flag) builds an FP16 engine from.

int8: explicit quantization, the one INT8 artifact for onnxruntime (CPU) and TensorRT 8.5 -> 11:
QuantizeLinear/DequantizeLinear pairs with int8 activations and weights, symmetric (zero point 0,
TensorRT's requirement), per-channel weight scales, at the source model's opset (17 by default).
Produced by onnxruntime's static quantization from a calibration set (default), or by NVIDIA
ModelOpt when installed (its output is opset >= 19, so TensorRT 10+ only).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from gear_trt.artifacts.meta import DeployMeta
from gear_trt.artifacts.onnx_meta import get_meta, set_meta
from gear_trt.choices import PRECISIONS  # noqa: F401 - gear_trt.export.PRECISIONS
from gear_trt.errors import ArtifactError, ConfigError
from gear_trt.io import atomic_write_bytes, sha256_file

PathLike = Union[str, "os.PathLike[str]"]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
INT8_PRODUCERS = ("onnxruntime", "modelopt")
FP16_MAX = float(np.finfo(np.float16).max)

# (op type, input index) pairs that ONNX requires to stay float32 whatever the data type.
_FLOAT32_INPUTS = {("Resize", 2), ("Upsample", 1)}


class CalibrationReader:
    """Calibration batches for onnxruntime's quantizer: `get_next()` -> {input_name: batch} or None.

    `data` is preprocessed float32 NCHW (the model's eval transform); `rewind()` starts over, so one
    reader serves several calibration passes.
    """

    def __init__(self, data: np.ndarray, input_name: str = "input", batch_size: int = 64) -> None:
        data = np.ascontiguousarray(data, dtype=np.float32)
        if data.ndim != 4 or len(data) == 0:
            raise ConfigError(f"calibration data must be a non-empty float32 [N, C, H, W] array, got shape {data.shape}", "preprocess the calibration images first")
        if batch_size < 1:
            raise ConfigError(f"calibration batch size must be >= 1, got {batch_size}")
        self.data, self.input_name, self.batch_size = data, input_name, batch_size
        self._pos = 0

    def __len__(self) -> int:
        return (len(self.data) + self.batch_size - 1) // self.batch_size

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        if self._pos >= len(self.data):
            return None
        batch = self.data[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._pos = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item


# --- fp16 --------------------------------------------------------------------------------------

def _to_half(array: np.ndarray) -> np.ndarray:
    # Values beyond fp16's range would become inf; clip them to its largest finite value instead.
    return np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16)


def convert_float_to_fp16(model: Any, keep_io_types: bool = True) -> Any:
    """Convert an fp32 ModelProto to fp16 in place (returns it). Graph I/O stays fp32 if keep_io_types."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if any(n.op_type in ("Loop", "If", "Scan") for n in graph.node):
        raise ArtifactError("fp16 conversion does not handle control-flow subgraphs (Loop/If/Scan)", "export a model without control flow")
    keep_fp32 = {n.input[i] for n in graph.node for (op, i) in _FLOAT32_INPUTS if n.op_type == op and len(n.input) > i}
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep_fp32:
            init.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(init)), init.name))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == attr.TENSOR and attr.t.data_type == TensorProto.FLOAT and node.op_type in ("Constant", "ConstantOfShape"):
                attr.t.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(attr.t)), attr.t.name))
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    head, tail = [], []
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        if keep_io_types:
            inner = value.name + "__fp16"
            for node in graph.node:
                node.input[:] = [inner if x == value.name else x for x in node.input]
            head.append(helper.make_node("Cast", [value.name], [inner], name=value.name + "__cast_fp16", to=TensorProto.FLOAT16))
        else:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    for value in graph.output:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        if keep_io_types:
            inner = value.name + "__fp16"
            for node in graph.node:
                node.output[:] = [inner if x == value.name else x for x in node.output]
                node.input[:] = [inner if x == value.name else x for x in node.input]
            tail.append(helper.make_node("Cast", [inner], [value.name], name=value.name + "__cast_fp32", to=TensorProto.FLOAT))
        else:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    nodes = head + list(graph.node) + tail
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # stale float32 annotations; shape inference rebuilds them
    return model


def to_fp16(src: PathLike, dst: PathLike, *, keep_io_types: bool = True) -> Path:
    """fp32 ONNX at `src` -> fp16 ONNX at `dst` (float32 I/O by default), with metadata precision "fp16"."""
    import onnx

    model = onnx.load(os.fspath(src))
    meta = get_meta(model, str(src))
    _require_precision(meta, "fp32", src)
    convert_float_to_fp16(model, keep_io_types=keep_io_types)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    lineage = {**meta.lineage, "source_onnx_sha256": sha256_file(src), "transform": f"fp16 (gear-trt converter, keep_io_types={keep_io_types})"}
    set_meta(model, dataclasses.replace(meta, precision="fp16", lineage=lineage))
    _check(model, dst)
    atomic_write_bytes(dst, model.SerializeToString())
    return Path(dst)


# --- int8 Q/DQ ---------------------------------------------------------------------------------

def _require_precision(meta: DeployMeta, expected: str, where: PathLike) -> None:
    if meta.precision != expected:
        raise ConfigError(f"{where} is a {meta.precision} model; this transform takes the {expected} ONNX", f"pass the {expected} ONNX that `gear-trt export` wrote")


def _check(model: Any, where: PathLike) -> None:
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ArtifactError(f"{where}: the converted model fails onnx.checker: {str(exc).splitlines()[0]}", "report this as a bug") from None


def _calibrate_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"unknown calibration method {name!r}", f"choose one of {', '.join(CALIBRATION_METHODS)}") from None


class _OrtQuantizer:
    """onnxruntime static quantization, calibrated once: each call re-quantizes with other float layers."""

    def __init__(self, src: Path, reader: CalibrationReader, method: str, per_channel: bool, workdir: Path) -> None:
        from onnxruntime.quantization import quant_pre_process

        self.reader, self.method, self.per_channel = reader, method, per_channel
        self.pre = workdir / "pre.onnx"
        self.ranges = workdir / "ranges.json"  # onnxruntime's calibration cache: ranges are measured once
        # Shape inference only: ORT's optimisation pass would add ORT-specific opset imports and nodes.
        quant_pre_process(str(src), str(self.pre), skip_optimization=True)

    def __call__(self, exclude: Sequence[str], dst: Path) -> Path:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        self.reader.rewind()
        quantize_static(
            str(self.pre), str(dst), None if self.ranges.is_file() else self.reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=self.per_channel,
            reduce_range=False,
            calibrate_method=_calibrate_method(self.method),
            nodes_to_exclude=list(exclude),
            # Biases stay float: TensorRT dequantizes int8 only, not ORT's int32 biases.
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
            calibration_cache_path=str(self.ranges),
        )
        return dst


def _logits(model: Union[Path, bytes], data: np.ndarray, input_name: str) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), so, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {input_name: data[i : i + 256]})[0] for i in range(0, len(data), 256)])


def choose_float_layers(quantize: Any, fp32_model: Any, reader: CalibrationReader, exclude: Sequence[str], count: int, workdir: Path,
                        min_gain: float = 0.2) -> tuple[list[str], dict[str, float]]:
    """Greedy mixed precision: up to `count` Conv/Gemm/MatMul layers to keep in float, each the one whose
    float version brings the int8 logits closest to fp32's on the calibration images (mean squared
    error), and only while that cuts the error by at least `min_gain` (a layer that stands out)."""
    ref = _logits(fp32_model.SerializeToString(), reader.data, reader.input_name)
    trial = workdir / "trial.onnx"

    def error(excluded: list[str]) -> float:
        return float(np.mean((_logits(quantize(excluded, trial), reader.data, reader.input_name) - ref) ** 2))

    chosen, scores = list(exclude), {"(none)": error(list(exclude))}
    current = scores["(none)"]
    candidates = [n.name for n in fp32_model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and n.name and n.name not in exclude]
    for _ in range(count):
        trials = {c: error(chosen + [c]) for c in candidates if c not in chosen}
        if not trials:
            break
        best = min(trials, key=lambda c: trials[c])
        if trials[best] > (1 - min_gain) * current:
            break
        chosen.append(best)
        current = scores[best] = trials[best]
    return chosen, scores


def _modelopt_quantization() -> Any:
    """modelopt.onnx.quantization, imported so that a stub-only `tensorrt` (tensorrt-stubs installs an
    empty package) is not taken for TensorRT: ModelOpt decides at import time, from `import tensorrt`
    succeeding, that TensorRT is there, and later calls trt.Logger (AttributeError)."""
    import sys

    from gear_trt._deps import optional_import

    if "modelopt.onnx.quantization" in sys.modules:
        return sys.modules["modelopt.onnx.quantization"]
    try:
        import tensorrt

        stub_only = not hasattr(tensorrt, "Logger")
    except ImportError:
        stub_only = False
    if not stub_only:
        return optional_import("modelopt.onnx.quantization")
    saved = sys.modules.pop("tensorrt")
    sys.modules["tensorrt"] = None  # type: ignore[assignment]  # makes `import tensorrt` raise ImportError
    try:
        return optional_import("modelopt.onnx.quantization")
    finally:
        sys.modules["tensorrt"] = saved


def _quantize_modelopt(src: Path, dst: Path, reader: CalibrationReader, method: str, exclude: Sequence[str] = ()) -> None:
    mq = _modelopt_quantization()
    if method not in ("minmax", "entropy"):
        raise ConfigError(f"ModelOpt calibrates with 'minmax' (max) or 'entropy', not {method!r}", "pass --calib-method minmax or entropy")
    mq.quantize(
        onnx_path=str(src), quantize_mode="int8", calibration_data={reader.input_name: reader.data},
        calibration_method="max" if method == "minmax" else "entropy", calibration_eps=["cpu"],
        high_precision_dtype="fp32", nodes_to_exclude=list(exclude), output_path=str(dst),
    )


def classifier_nodes(model: Any) -> list[str]:
    """Names of the Gemm/MatMul layers that produce the graph's outputs (through reshapes only)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    found = []
    for out in model.graph.output:
        node = producer.get(out.name)
        while node is not None and node.op_type in ("Identity", "Reshape", "Flatten", "Squeeze", "Cast"):
            node = producer.get(node.input[0])
        if node is not None and node.op_type in ("Gemm", "MatMul"):
            found.append(node.name)
    return found


def to_int8_qdq(src: PathLike, dst: PathLike, reader: CalibrationReader, *, method: str = "minmax", per_channel: bool = True,
                producer: str = "onnxruntime", calibration: Optional[Mapping[str, Any]] = None,
                keep_float: Optional[Sequence[str]] = None, float_layers: int = 1) -> Path:
    """fp32 ONNX at `src` -> INT8 Q/DQ ONNX at `dst` calibrated on `reader`'s batches.

    keep_float names nodes left unquantized; by default the classifier (the last Gemm/MatMul): it
    holds a few hundred multiply-adds, and quantizing its input and weights cost the most accuracy,
    above all on corrupted images (docs/deploy.md). float_layers: up to that many more layers stay
    float if quantizing them moves the logits most on the calibration images (choose_float_layers;
    onnxruntime producer only). `calibration` (e.g. a manifest's summary) is recorded in the
    metadata's lineage. The result is checked: every zero point 0, int8 only, per-channel weights.
    """
    import onnx

    if float_layers < 0:
        raise ConfigError(f"float_layers must be >= 0, got {float_layers}")
    if producer not in INT8_PRODUCERS:
        raise ConfigError(f"unknown INT8 producer {producer!r}", f"choose one of {', '.join(INT8_PRODUCERS)}")
    src, dst = Path(src), Path(dst)
    source_model = onnx.load(os.fspath(src), load_external_data=False)
    meta = get_meta(source_model, str(src))
    _require_precision(meta, "fp32", src)
    exclude = list(classifier_nodes(source_model) if keep_float is None else keep_float)
    if reader.input_name != meta.input_name:
        raise ConfigError(f"calibration reader feeds {reader.input_name!r}, the model's input is {meta.input_name!r}", "build the reader with the model's input name")
    sensitivity: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gear-trt-int8-") as tmp:
        out = Path(tmp) / "int8.onnx"
        if producer == "onnxruntime":
            quantize = _OrtQuantizer(src, reader, method, per_channel, Path(tmp))
            if float_layers > 0:
                exclude, sensitivity = choose_float_layers(quantize, source_model, reader, exclude, float_layers, Path(tmp))
            quantize(exclude, out)
        else:
            _quantize_modelopt(src, out, reader, method, exclude)
        model = onnx.load(str(out))
    summary = qdq_summary(model)
    if summary["quantize_nodes"] == 0:
        raise ArtifactError(f"{src}: quantization inserted no QuantizeLinear nodes", "check that the model has Conv/Gemm layers")
    if not summary["zero_points_all_zero"] or summary["dtypes"] != ["int8"]:
        raise ArtifactError(f"{dst}: the Q/DQ model is not symmetric int8 (dtypes {summary['dtypes']}, zero points all 0: {summary['zero_points_all_zero']})",
                            "report this as a bug; TensorRT needs int8 Q/DQ with zero point 0")
    if per_channel and not summary["per_channel_weights"]:
        raise ArtifactError(f"{dst}: weights were not quantized per channel", "report this as a bug")
    lineage = {
        **meta.lineage, "source_onnx_sha256": sha256_file(src),
        "transform": f"int8 Q/DQ ({producer}, {method}, symmetric, {'per-channel' if per_channel else 'per-tensor'} weights, float_layers={float_layers})",
        "float_nodes": exclude,
        "float_layer_search": {k: round(v, 6) for k, v in sensitivity.items()},
        "calibration": dict(calibration or {"batches": len(reader), "images": len(reader.data)}),
    }
    set_meta(model, dataclasses.replace(meta, precision="int8", lineage=lineage))
    _check(model, dst)
    atomic_write_bytes(dst, model.SerializeToString())
    return dst


def qdq_summary(model: Any) -> dict[str, Any]:
    """Facts about a Q/DQ model: node counts, zero points, quantized dtypes, weight granularity, opset."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    consts = {o: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" for o in n.output}

    def const(name: str) -> Optional[np.ndarray]:
        t = inits.get(name) or consts.get(name)
        return None if t is None else numpy_helper.to_array(t)

    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    zero_all, dtypes = True, set()
    for node in q + dq:
        zp = const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None:  # an absent zero point means 0 with uint8 type (ONNX default): not what TensorRT wants
            dtypes.add("uint8")
            continue
        dtypes.add(str(zp.dtype))
        zero_all &= bool(np.all(zp == 0))
    # Weights reach their layer through a DQ, stored either quantized (onnxruntime: int8 initializer ->
    # DQ) or float behind a Q (ModelOpt: float initializer -> Q -> DQ, which TensorRT folds).
    q_of_init = {n.output[0]: n.input[0] for n in q if n.input[0] in inits}
    weight_of = {n.output[0]: n.input[0] if n.input[0] in inits else q_of_init[n.input[0]] for n in dq
                 if n.input[0] in inits or n.input[0] in q_of_init}
    weight_dq = [n for n in dq if n.output[0] in weight_of]
    per_channel = [n for n in weight_dq if (s := const(n.input[1])) is not None and s.size > 1]
    multi_dim = [n for n in weight_dq if len(inits[weight_of[n.output[0]]].dims) >= 2]  # conv/gemm kernels (not biases)
    return {
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0),
        "quantize_nodes": len(q),
        "dequantize_nodes": len(dq),
        "zero_points_all_zero": zero_all,
        "dtypes": sorted(dtypes),
        "weight_tensors": len(multi_dim),
        "per_channel_weights": bool(multi_dim) and all(n in per_channel for n in multi_dim),
    }

"""onnxruntime runner and the onnxruntime "engine" (an optimised model file plus a sidecar).

Providers are chosen explicitly: CPU by default; "cuda" and "tensorrt" only when this onnxruntime
has them, and a session that silently fell back to the CPU is an error, not a slower success.
Graph optimisation is ORT_ENABLE_ALL and the thread count can be set (latency on a shared CPU is
only reproducible with a fixed one).

The onnxruntime equivalent of a TensorRT engine is the model after ORT_ENABLE_ALL optimisation,
saved once (`build_ort_engine`): layout transforms and fusions are done, and like a TensorRT engine
the file is only valid for the onnxruntime version and CPU it was made on, which its sidecar records
and `OrtRunner` checks (gear_trt.artifacts.compat.check_onnxruntime_compat).
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from gear_trt.artifacts.compat import check_onnxruntime_compat
from gear_trt.artifacts.meta import DeployMeta
from gear_trt.artifacts.onnx_meta import read_meta, set_meta
from gear_trt.artifacts.sidecar import Sidecar, make_sidecar, read_sidecar, sidecar_path, write_sidecar
from gear_trt.backends.base import Runner
from gear_trt.errors import ArtifactError, BackendUnavailable, ConfigError
from gear_trt.io import atomic_write, sha256_file

PathLike = Union[str, "os.PathLike[str]"]

DEVICES: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(device: str = "cpu", providers: Optional[Sequence[str]] = None) -> list[str]:
    """The provider list for `device` ("cpu", "cuda", "tensorrt"), or `providers` as given, all checked to exist here."""
    if providers is None:
        if device not in DEVICES:
            raise ConfigError(f"unknown onnxruntime device {device!r}", f"choose one of {', '.join(DEVICES)}")
        providers = DEVICES[device]
    have = available_providers()
    missing = [p for p in providers if p not in have]
    if missing:
        raise BackendUnavailable(f"onnxruntime here has no {', '.join(missing)} (it has {', '.join(have)})",
                                 "install onnxruntime-gpu (and TensorRT for its TensorRT provider), or use device='cpu'")
    return list(providers)


def session_options(*, threads: Optional[int] = None, optimization: str = "all", optimized_model_path: Optional[PathLike] = None) -> Any:
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise ConfigError(f"unknown graph optimisation level {optimization!r}", f"choose one of {', '.join(OPTIMIZATION_LEVELS)}")
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[optimization]
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only: ORT's warnings about hardware-specific saved models are expected
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}", "pass --threads 1 or more (or leave it unset for onnxruntime's default)")
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if optimized_model_path is not None:
        so.optimized_model_filepath = os.fspath(optimized_model_path)
    return so


def _open_session(path: PathLike, so: Any, providers: list[str]) -> Any:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(os.fspath(path), so, providers=providers)
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"onnxruntime cannot load {path}: {first[:300]}", "check the file is a complete ONNX model; re-export it") from None
    used = session.get_providers()
    if used[0] != providers[0]:  # onnxruntime falls back to the CPU with only a log line; refuse that
        raise BackendUnavailable(f"onnxruntime could not start {providers[0]} for {path} (it runs on {used[0]})",
                                 "check the CUDA/TensorRT installation, or use device='cpu'")
    return session


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU model (an optimised onnxruntime model is only valid on the instruction set it was made for)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ort_environment() -> dict[str, str]:
    import onnxruntime as ort

    return {"version": ort.__version__, "machine": platform.machine(), "cpu": cpu_name()}


class OrtRunner(Runner):
    """An ONNX file (plain, or an optimised "engine" with a sidecar) in an onnxruntime session.

    Metadata comes from `meta` if given, else the sidecar beside the file, else the file's own
    metadata_props. A sidecar with an "onnxruntime" section marks an optimised model, which is
    valid only on the onnxruntime version and CPU that made it (gear_trt.artifacts.compat).
    """

    backend = "onnxruntime"

    def __init__(self, path: PathLike, *, device: str = "cpu", providers: Optional[Sequence[str]] = None, threads: Optional[int] = None,
                 optimization: str = "all", meta: Optional[DeployMeta] = None, sidecar: Optional[Sidecar] = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path} does not exist", "check the path; `gear-trt export` writes RUN_DIR/onnx/*.onnx")
        if sidecar is None and sidecar_path(path).is_file():
            sidecar = read_sidecar(path)
        self.sidecar = sidecar
        if sidecar is not None and sidecar.backend not in (None, "onnxruntime"):
            sidecar.section("onnxruntime")  # raises: the sidecar of a TensorRT engine
        info = sidecar.raw.get("onnxruntime") if sidecar is not None else None
        self.optimised = isinstance(info, dict)  # made by build_ort_engine (else plain metadata beside the file)
        if isinstance(info, dict):
            check_onnxruntime_compat(info, **ort_environment(), where=str(path))
        super().__init__(meta or (sidecar.meta if sidecar is not None else read_meta(path)), path=path)
        self.file = path
        self.providers = resolve_providers(device, providers)
        self.threads = threads
        self.optimization = optimization
        self.session: Any = None

    def _activate(self) -> None:
        so = session_options(threads=self.threads, optimization=self.optimization)
        session = _open_session(self.file, so, self.providers)
        self._check_io(session)
        self.session = session
        self._feed_name, self._outputs = self.meta.input_name, [self.meta.output_name]

    def _check_io(self, session: Any) -> None:
        """The model's inputs and outputs against the metadata (names, dtype, shape, classes) before any inference."""
        meta, where = self.meta, str(self.file)
        fix = "re-export the model so the metadata matches it"
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
        if meta.input_name not in inputs:
            raise ArtifactError(f"{where}: metadata names input {meta.input_name!r}, the model has {sorted(inputs)}", fix)
        if meta.output_name not in outputs:
            raise ArtifactError(f"{where}: metadata names output {meta.output_name!r}, the model has {sorted(outputs)}", fix)
        inp = inputs[meta.input_name]
        if inp.type != "tensor(float)":
            raise ArtifactError(f"{where}: input {inp.name!r} is {inp.type}, expected tensor(float)", "export the model with a float32 input")
        shape, expected = list(inp.shape), meta.input_shape
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], expected[1:])):
            raise ArtifactError(f"{where}: input shape {shape} does not match the metadata's {expected}", fix)
        out_shape = list(outputs[meta.output_name].shape)
        if out_shape and isinstance(out_shape[-1], int) and out_shape[-1] != len(meta.classes):
            raise ArtifactError(f"{where}: the model outputs {out_shape[-1]} classes, the metadata lists {len(meta.classes)}", fix)
        self.fixed_batch = self.max_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None

    def _infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(self._outputs, {self._feed_name: x})[0]

    def _deactivate(self) -> None:
        self.session = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.providers, "threads": self.threads, "optimization": self.optimization,
                "optimised_file": self.optimised}


def count_fp16_tensors(model: Any) -> int:
    """float16 initializers plus casts to float16 in a model: 0 means it computes in float32 throughout."""
    from onnx import TensorProto

    casts = sum(1 for n in model.graph.node if n.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT16 for a in n.attribute))
    return casts + sum(1 for i in model.graph.initializer if i.data_type == TensorProto.FLOAT16)


def build_ort_engine(onnx_path: PathLike, engine_path: PathLike, *, threads: Optional[int] = None, device: str = "cpu") -> Path:
    """Optimise `onnx_path` once with ORT_ENABLE_ALL for this CPU/onnxruntime; write it and its sidecar.

    The precision is the ONNX file's (fp32, fp16 or int8 Q/DQ): nothing is converted here.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    meta = read_meta(onnx_path)
    providers = resolve_providers(device)

    fp16_tensors = 0

    def write(tmp: Path) -> None:
        import onnx

        nonlocal fp16_tensors
        so = session_options(threads=threads, optimization="all", optimized_model_path=tmp)
        _open_session(onnx_path, so, providers)
        model = onnx.load(os.fspath(tmp))
        fp16_tensors = count_fp16_tensors(model)
        set_meta(model, meta)  # keep the metadata inside the optimised file too
        tmp.write_bytes(model.SerializeToString())

    atomic_write(engine_path, write)
    # onnxruntime's CPU provider runs most fp16 operators through casts to fp32: record what it kept.
    section = {**ort_environment(), "providers": providers, "optimization_level": "all", "precision": meta.precision,
               "onnx": onnx_path.name, "onnx_sha256": sha256_file(onnx_path), "fp16_tensors": fp16_tensors}
    write_sidecar(engine_path, make_sidecar(meta, "onnxruntime", engine_path, section))
    return engine_path

"""TensorRT: build an engine from an ONNX file, and run it (TensorRT 8.5 / JetPack 5 through 11).

Kept thin and split in two:
  * pure decisions, testable without TensorRT: `detect_features(api)` reads what a tensorrt module
    offers (any object with the same attributes will do, so tests pass fakes of 8.5, 10.x and 11.x),
    `plan_build` picks network/builder flags and which ONNX precision to parse from those features
    (never from version strings), `profile_shapes`, `format_parser_errors`;
  * thin calls into the real API: `build_engine` and `TrtRunner` (name-based I/O, execute_async_v3 on
    a non-default torch CUDA stream with torch CUDA tensors as buffers: no PyCUDA).

Precision policy (TENSORRT.md section 2.4):
    TensorRT with FP16/INT8 builder flags (8.x, 10.x), weakly typed:
        fp32 <- fp32 ONNX, TF32 cleared;  fp16 <- fp32 ONNX + FP16 flag;  int8 <- Q/DQ ONNX + INT8 flag
    strongly typed (TensorRT 11, where the flags are gone; or asked for on 10.x):
        fp32 <- fp32 ONNX;  fp16 <- fp16 ONNX;  int8 <- Q/DQ ONNX; no precision flags
A request the installed TensorRT cannot honour raises; nothing is quietly built at another precision.

This module is type-checked with mypy against tensorrt-stubs (the TensorRT 10.13 API): `trt` below
is the real module to mypy. Names outside 10.13 (8.x-only, 11-only) are reached through getattr
behind a feature check.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union, cast

import numpy as np

from gear_trt.artifacts.compat import check_tensorrt_compat, rebuild_hint
from gear_trt.artifacts.meta import DeployMeta
from gear_trt.artifacts.onnx_meta import read_meta
from gear_trt.artifacts.sidecar import Sidecar, make_sidecar, read_sidecar, write_sidecar
from gear_trt.backends.base import Runner
from gear_trt.choices import PRECISIONS
from gear_trt.errors import ArtifactError, BackendUnavailable, ConfigError
from gear_trt.io import atomic_write_bytes, sha256_file

try:
    import tensorrt as trt
except ImportError:  # pragma: no cover - the usual case off the device
    trt = None  # type: ignore[assignment]

PathLike = Union[str, "os.PathLike[str]"]
DEFAULT_WORKSPACE_MIB = 1024


# --- availability --------------------------------------------------------------------------------

def tensorrt_importable() -> bool:
    """True if the real TensorRT bindings are importable (tensorrt-stubs alone installs an empty package)."""
    return trt is not None and hasattr(trt, "Builder")


def tensorrt_status() -> tuple[bool, str]:
    """(usable, reason): TensorRT importable and a CUDA GPU visible to torch."""
    if not tensorrt_importable():
        return False, "TensorRT is not importable"
    try:
        import torch
    except ImportError:
        return False, "torch is not importable"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU is visible"
    return True, f"TensorRT {trt.__version__} on {torch.cuda.get_device_name(0)}"


def require_tensorrt() -> None:
    ok, why = tensorrt_status()
    if not ok:
        raise BackendUnavailable(f"TensorRT cannot run here: {why}",
                                 "on a Jetson TensorRT comes with JetPack (python3-libnvinfer); elsewhere `pip install tensorrt` from NVIDIA's index; "
                                 "or use --backend onnxruntime")


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of CUDA device `device`."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


# --- pure decisions (unit-tested with fake tensorrt namespaces) ------------------------------------

@dataclasses.dataclass(frozen=True)
class FeatureSet:
    """What an installed tensorrt module offers, as far as building and running our engines goes."""

    version: str
    explicit_batch_flag: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH (8.x/10.x; gone in 11)
    strongly_typed_flag: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (10.x+)
    fp16_flag: bool  # BuilderFlag.FP16 (<= 10.x)
    int8_flag: bool  # BuilderFlag.INT8 (<= 10.x)
    tf32_flag: bool  # BuilderFlag.TF32

    @property
    def weak_typing(self) -> bool:
        """Precision flags exist, so a weakly typed network can be told which precisions it may use."""
        return self.fp16_flag and self.int8_flag


def detect_features(api: Any) -> FeatureSet:
    net_flags = getattr(api, "NetworkDefinitionCreationFlag", None)
    builder_flags = getattr(api, "BuilderFlag", None)
    return FeatureSet(
        version=str(getattr(api, "__version__", "unknown")),
        explicit_batch_flag=hasattr(net_flags, "EXPLICIT_BATCH"),
        strongly_typed_flag=hasattr(net_flags, "STRONGLY_TYPED"),
        fp16_flag=hasattr(builder_flags, "FP16"),
        int8_flag=hasattr(builder_flags, "INT8"),
        tf32_flag=hasattr(builder_flags, "TF32"),
    )


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    precision: str
    onnx_precision: str  # which ONNX variant to parse: fp32, fp16 or int8 (Q/DQ)
    strongly_typed: bool
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]  # set
    cleared_flags: tuple[str, ...]  # cleared (TF32 for a true fp32 engine)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def choose_network_flags(features: FeatureSet, strongly_typed: bool) -> tuple[str, ...]:
    flags = []
    # EXPLICIT_BATCH is required for ONNX on 8.x, deprecated and ignored on 10.x (which also has
    # STRONGLY_TYPED), removed on 11: set it only where it still means something.
    if features.explicit_batch_flag and not features.strongly_typed_flag:
        flags.append("EXPLICIT_BATCH")
    if strongly_typed and features.strongly_typed_flag:  # a TensorRT with no flag at all is strongly typed anyway
        flags.append("STRONGLY_TYPED")
    return tuple(flags)


def choose_builder_flags(features: FeatureSet, precision: str, strongly_typed: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(flags to set, flags to clear) for `precision`."""
    cleared = ("TF32",) if precision == "fp32" and features.tf32_flag else ()
    if strongly_typed:  # types come from the ONNX; precision flags are refused (10.x) or absent (11)
        return (), cleared
    return {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",)}[precision], cleared


def plan_build(features: FeatureSet, precision: str, *, strongly_typed: Optional[bool] = None) -> BuildPlan:
    """How to build a `precision` engine with this TensorRT. strongly_typed None: weak typing where the
    precision flags exist (8.x, 10.x), strong typing where they do not (11)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", f"choose one of {', '.join(PRECISIONS)}")
    if strongly_typed is None:
        strongly_typed = not features.weak_typing
    if strongly_typed and not features.strongly_typed_flag and features.weak_typing:  # 8.x
        raise ConfigError(f"TensorRT {features.version} has no strongly typed networks", "build without --strongly-typed (TensorRT 10+ has them)")
    if not strongly_typed and not features.weak_typing:
        raise ConfigError(f"TensorRT {features.version} has no FP16/INT8 builder flags, so every network is strongly typed",
                          "leave --strongly-typed on (the default for this TensorRT)")
    onnx_precision = precision if strongly_typed else ("int8" if precision == "int8" else "fp32")
    builder, cleared = choose_builder_flags(features, precision, strongly_typed)
    return BuildPlan(precision, onnx_precision, strongly_typed, choose_network_flags(features, strongly_typed), builder, cleared)


def profile_shapes(input_chw: Sequence[int], min_batch: int, opt_batch: int, max_batch: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) NCHW shapes of the optimisation profile for the batch range."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ConfigError(f"batch range must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}",
                          "e.g. --min-batch 1 --opt-batch 32 --max-batch 256")
    chw = tuple(int(d) for d in input_chw)
    if len(chw) != 3 or any(d < 1 for d in chw):
        raise ConfigError(f"input must be C, H, W with positive sizes, got {list(input_chw)}")
    return (min_batch, *chw), (opt_batch, *chw), (max_batch, *chw)


def format_parser_errors(parser: Any) -> list[str]:
    """One line per ONNX parser error: node index, name and operator (10.x+), code and description."""
    lines = []
    for i in range(int(parser.num_errors)):
        err = parser.get_error(i)
        where = f"node {err.node()}"
        if hasattr(err, "node_name"):  # 10.x+; 8.x reports the index only
            name, op = err.node_name(), err.node_operator()
            where += f" ({name or '?'}: {op or '?'})"
        code = getattr(err.code(), "name", str(err.code()))
        lines.append(f"{where}: {code}: {err.desc()}")
    return lines


# --- thin calls into the real API -------------------------------------------------------------------

def _network_flag(name: str) -> "trt.NetworkDefinitionCreationFlag":
    # By name: EXPLICIT_BATCH is gone in 11. Only names plan_build took from detect_features(trt) reach here.
    if name not in ("EXPLICIT_BATCH", "STRONGLY_TYPED"):
        raise ValueError(f"unknown network flag {name}")
    return getattr(trt.NetworkDefinitionCreationFlag, name)


def _builder_flag(name: str) -> "trt.BuilderFlag":
    # By name: FP16 and INT8 are gone in 11. Only names plan_build took from detect_features(trt) reach here.
    if name not in ("FP16", "INT8", "TF32"):
        raise ValueError(f"unknown builder flag {name}")
    return getattr(trt.BuilderFlag, name)


def _dims(shape: tuple[int, ...]) -> "trt.Dims":
    # Every TensorRT version converts a tuple to Dims implicitly; Dims' own constructor differs
    # between 8.x and 10.x, so pass the tuple and tell mypy what it becomes.
    return cast("trt.Dims", shape)


def _shape(dims: "trt.Dims") -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def _torch_dtype(dtype: "trt.DataType") -> Any:
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT8: torch.int8,
             trt.DataType.INT32: torch.int32, trt.DataType.BOOL: torch.bool}
    if hasattr(trt.DataType, "INT64"):  # 10.x+
        table[trt.DataType.INT64] = torch.int64
    if dtype not in table:
        raise ArtifactError(f"engine tensor type {dtype} is not supported here", "export the model with float32 inputs and outputs")
    return table[dtype]


def build_engine(onnx_path: PathLike, engine_path: PathLike, *, precision: str = "fp32", min_batch: int = 1, opt_batch: int = 32,
                 max_batch: int = 256, workspace_mib: int = DEFAULT_WORKSPACE_MIB, timing_cache: Optional[PathLike] = None,
                 strongly_typed: Optional[bool] = None, optimization_level: Optional[int] = None, device: int = 0,
                 verbose: bool = False) -> Path:
    """Parse `onnx_path`, build a `precision` engine for batches min..max and save it with its sidecar.

    `onnx_path` must be the ONNX variant the plan asks for (plan_build(...).onnx_precision): the fp32
    ONNX, the fp16 ONNX (strongly typed fp16) or the INT8 Q/DQ ONNX. A timing cache file is read if
    it exists and written back after the build.
    """
    import torch

    require_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    features = detect_features(trt)
    plan = plan_build(features, precision, strongly_typed=strongly_typed)
    meta = read_meta(onnx_path)
    if meta.precision != plan.onnx_precision:
        raise ConfigError(f"a {precision} engine on TensorRT {features.version} builds from the {plan.onnx_precision} ONNX; {onnx_path.name} is {meta.precision}",
                          f"pass the {plan.onnx_precision} ONNX (`gear-trt export --precision {plan.onnx_precision}`)")
    if workspace_mib < 1:
        raise ConfigError(f"workspace must be >= 1 MiB, got {workspace_mib}")
    shapes = profile_shapes((3, meta.preprocess.input_size, meta.preprocess.input_size), min_batch, opt_batch, max_batch)

    with torch.cuda.device(device):
        logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flag_bits = 0
        for name in plan.network_flags:
            flag_bits |= 1 << int(_network_flag(name))
        network = builder.create_network(flag_bits)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = format_parser_errors(parser)
            raise ArtifactError(f"TensorRT {features.version} cannot parse {onnx_path.name}: " + "; ".join(errors or ["no details"]),
                                "check the opset (TensorRT 8.x parses up to 17) and the operators named; re-export with --opset 17")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
        for name in plan.builder_flags:
            config.set_flag(_builder_flag(name))
        for name in plan.cleared_flags:
            config.clear_flag(_builder_flag(name))
        if optimization_level is not None:
            if not hasattr(config, "builder_optimization_level"):  # added in 8.6
                raise ConfigError(f"TensorRT {features.version} has no builder optimisation levels", "drop --opt-level (TensorRT 8.6+ has them)")
            config.builder_optimization_level = optimization_level
        profile = builder.create_optimization_profile()
        profile.set_shape(meta.input_name, _dims(shapes[0]), _dims(shapes[1]), _dims(shapes[2]))
        config.add_optimization_profile(profile)
        cache_in = Path(timing_cache).read_bytes() if timing_cache is not None and Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(cache_in)
        config.set_timing_cache(cache, False)
        start = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        seconds = time.perf_counter() - start
        if serialized is None:
            raise ArtifactError(f"TensorRT {features.version} failed to build a {precision} engine from {onnx_path.name} (see its log above)",
                                "try a larger --workspace-mib, a smaller --max-batch, or report the log")
        atomic_write_bytes(engine_path, bytes(memoryview(serialized)))
        if timing_cache is not None:
            atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
        gpu_name, cc = gpu_identity(device)
        section = {
            "version": trt.__version__, "gpu_name": gpu_name, "compute_capability": cc, "precision": precision,
            "min_batch": min_batch, "opt_batch": opt_batch, "max_batch": max_batch,
            "onnx": onnx_path.name, "onnx_sha256": sha256_file(onnx_path), "onnx_precision": meta.precision,
            "strongly_typed": plan.strongly_typed, "network_flags": list(plan.network_flags),
            "build_flags": list(plan.builder_flags), "cleared_flags": list(plan.cleared_flags),
            "workspace_bytes": workspace_mib << 20, "builder_optimization_level": optimization_level,
            "fast_fp16": getattr(builder, "platform_has_fast_fp16", None),  # gone in 11
            "fast_int8": getattr(builder, "platform_has_fast_int8", None),
            "timing_cache": str(timing_cache) if timing_cache is not None else None,
            "build_seconds": round(seconds, 3), "version_compatible": False,
        }
    engine_meta = dataclasses.replace(meta, precision=precision)
    write_sidecar(engine_path, make_sidecar(engine_meta, "tensorrt", engine_path, section))
    return engine_path


class TrtRunner(Runner):
    """A serialized engine + its sidecar, run with torch CUDA tensors on a non-default stream.

    Before deserializing, the sidecar's build facts are checked against this TensorRT and GPU by the
    one compatibility rule (gear_trt.artifacts.compat); after it, the engine's own I/O names, shapes
    and optimisation profile are checked against the metadata, and the batch range is the profile's.
    """

    backend = "tensorrt"
    takes_torch = True

    def __init__(self, path: PathLike, *, device: int = 0, require_same_gpu: bool = True, meta: Optional[DeployMeta] = None,
                 sidecar: Optional[Sidecar] = None) -> None:
        path = Path(path)
        self.sidecar = sidecar or read_sidecar(path)
        self.info = self.sidecar.section("tensorrt")
        # The sidecar's batch range until activation reads the engine's own profile.
        super().__init__(meta or self.sidecar.meta, path=path, max_batch=int(self.info.get("max_batch") or 0) or None)
        self.file = path
        self.min_batch = int(self.info.get("min_batch") or 1)
        self.device = device
        self.require_same_gpu = require_same_gpu
        self._engine: Optional[trt.ICudaEngine] = None
        self._context: Optional[trt.IExecutionContext] = None
        self._stream: Any = None  # torch.cuda.Stream
        self._out_dtype: Any = None
        self._in_dtype: Any = None

    def _activate(self) -> None:
        import torch

        require_tensorrt()
        gpu_name, cc = gpu_identity(self.device)
        check_tensorrt_compat(self.info, runtime_version=trt.__version__, gpu_name=gpu_name, compute_capability=cc,
                              require_same_gpu=self.require_same_gpu, where=str(self.file))
        rebuild = rebuild_hint(self.info)
        with torch.cuda.device(self.device):
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            if hasattr(runtime, "engine_host_code_allowed"):  # 8.6+: a version-compatible plan carries its own lean runtime
                runtime.engine_host_code_allowed = self.info.get("version_compatible") is True
            engine = runtime.deserialize_cuda_engine(self.file.read_bytes())
            if engine is None:
                raise ArtifactError(f"TensorRT {trt.__version__} could not deserialize {self.file.name} (see its log above)", rebuild)
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            for name, mode in ((self.meta.input_name, trt.TensorIOMode.INPUT), (self.meta.output_name, trt.TensorIOMode.OUTPUT)):
                if name not in names or engine.get_tensor_mode(name) != mode:
                    raise ArtifactError(f"{self.file.name}: no {'input' if mode == trt.TensorIOMode.INPUT else 'output'} tensor {name!r} (it has {names})", rebuild)
            shape = _shape(engine.get_tensor_shape(self.meta.input_name))
            if len(shape) != 4 or list(shape[1:]) != self.meta.input_shape[1:]:
                raise ArtifactError(f"{self.file.name}: engine input shape {list(shape)} does not match the metadata's {self.meta.input_shape}", rebuild)
            if shape[0] == -1:  # dynamic batch: the range is the first optimisation profile's
                low, _, high = (_shape(d) for d in engine.get_tensor_profile_shape(self.meta.input_name, 0))
                self.min_batch, self.max_batch = low[0], high[0]
            else:
                self.min_batch = self.max_batch = self.fixed_batch = shape[0]
            self._engine = engine
            self._context = engine.create_execution_context()
            self._stream = torch.cuda.Stream(self.device)  # enqueueV3 on the legacy default stream costs extra syncs
            self._in_dtype = _torch_dtype(engine.get_tensor_dtype(self.meta.input_name))
            self._out_dtype = _torch_dtype(engine.get_tensor_dtype(self.meta.output_name))

    def _infer(self, x: Any) -> np.ndarray:
        import torch

        if x.shape[0] < self.min_batch:
            raise ConfigError(f"{self.name}: batch of {x.shape[0]} is below the engine's minimum {self.min_batch}", "rebuild with --min-batch 1")
        context, stream = self._context, self._stream
        assert context is not None, "activate() first"
        with torch.cuda.device(self.device), torch.cuda.stream(stream):
            inp = x.to(device=f"cuda:{self.device}", dtype=self._in_dtype, non_blocking=True).contiguous()
            context.set_input_shape(self.meta.input_name, tuple(inp.shape))
            out = torch.empty(_shape(context.get_tensor_shape(self.meta.output_name)), dtype=self._out_dtype, device=inp.device)
            context.set_tensor_address(self.meta.input_name, inp.data_ptr())
            context.set_tensor_address(self.meta.output_name, out.data_ptr())
            if not context.execute_async_v3(stream.cuda_stream):
                raise ArtifactError(f"{self.name}: TensorRT failed to run a batch of {inp.shape[0]} (see its log above)", rebuild_hint(self.info))
            result = out.float().cpu()  # a blocking copy on this stream: inp/out stay alive until TensorRT is done
        return result.numpy()

    def _deactivate(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        self._context = self._engine = self._stream = None

    def describe(self) -> dict[str, Any]:
        info = self.info
        return {**super().describe(), "tensorrt": info.get("version"), "gpu": info.get("gpu_name"), "build_flags": info.get("build_flags"),
                "strongly_typed": info.get("strongly_typed")}

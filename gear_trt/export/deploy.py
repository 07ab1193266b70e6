"""Checkpoint -> every requested ONNX precision -> engines: what `gear-trt export` and `build-engine` do.

Artifacts are reused when they are up to date: an fp32 ONNX whose metadata records this checkpoint's
sha256, an fp16/int8 ONNX whose metadata records this fp32 ONNX's sha256 (and, for int8, this
calibration set). Anything else is rebuilt, so a re-run after retraining never serves stale files.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

from gear_trt.artifacts.onnx_meta import read_meta
from gear_trt.artifacts.sidecar import read_sidecar
from gear_trt.choices import PRECISIONS
from gear_trt.errors import ArtifactError, BackendUnavailable, ConfigError
from gear_trt.export.layout import Checkpoint, base_name, engine_path
from gear_trt.io import sha256_file

if TYPE_CHECKING:
    import torch

    from gear_trt.export.calibration import CalibrationManifest

PathLike = Union[str, "os.PathLike[str]"]
Notify = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclasses.dataclass(frozen=True)
class CalibrationOptions:
    manifest: Optional[Path] = None  # loaded if it exists, else made and saved there
    source: str = "builtin"
    size: int = 512
    seed: int = 0
    method: str = "minmax"
    producer: str = "onnxruntime"
    batch_size: int = 64
    float_layers: int = 1  # most sensitive layers kept float (see precision.choose_float_layers)


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    opset: Optional[int] = None
    dynamo: bool = False
    parity_source: Optional[str] = "builtin"  # real images for the parity check; None: random inputs only
    parity_images: int = 64
    force: bool = False


def _meta_or_none(path: Path) -> Any:
    try:
        return read_meta(path) if path.is_file() else None
    except ArtifactError:
        return None


def _parity_images(source: Optional[str], count: int) -> Optional["torch.Tensor"]:
    if not source:
        return None
    from gear_trt.data import load_source

    ds = load_source(source, "test", progress=False)
    return ds.images[: min(count, len(ds))]


def ensure_fp32(cp: Checkpoint, opts: ExportOptions, notify: Notify = _stderr) -> Path:
    from gear_trt.export.onnx import export_checkpoint

    dst = cp.onnx("fp32")
    meta = _meta_or_none(dst)
    if not opts.force and meta is not None and meta.lineage.get("checkpoint_sha256") == sha256_file(cp.path):
        return dst
    notify(f"export: {cp.path} -> {dst}")
    return export_checkpoint(cp.path, dst, opset=opts.opset, dynamo=opts.dynamo, real_images=_parity_images(opts.parity_source, opts.parity_images),
                             lineage={"stage": cp.name})


def ensure_fp16(cp: Checkpoint, fp32: Path, opts: ExportOptions, notify: Notify = _stderr) -> Path:
    from gear_trt.export.precision import to_fp16

    dst = cp.onnx("fp16")
    meta = _meta_or_none(dst)
    if not opts.force and meta is not None and meta.lineage.get("source_onnx_sha256") == sha256_file(fp32):
        return dst
    notify(f"fp16: {fp32.name} -> {dst}")
    return to_fp16(fp32, dst)


def load_calibration(calib: CalibrationOptions, num_classes: int) -> tuple["CalibrationManifest", Any]:
    from gear_trt.export.calibration import resolve_manifest

    manifest, ds = resolve_manifest(calib.manifest, source=calib.source, size=calib.size, seed=calib.seed)
    if len(manifest.classes) != num_classes:
        raise ConfigError(f"the calibration data ({manifest.source}) has {len(manifest.classes)} classes, the model {num_classes}",
                          "calibrate on the data the model was trained on (--calib-source)")
    return manifest, ds


def ensure_int8(cp: Checkpoint, fp32: Path, calib: CalibrationOptions, opts: ExportOptions, notify: Notify = _stderr) -> Path:
    from gear_trt.export.calibration import calibration_reader
    from gear_trt.export.precision import to_int8_qdq

    dst = cp.onnx("int8")
    fp32_meta = read_meta(fp32)
    manifest, ds = load_calibration(calib, len(fp32_meta.classes))
    meta = _meta_or_none(dst)
    if (not opts.force and meta is not None and meta.lineage.get("source_onnx_sha256") == sha256_file(fp32)
            and (meta.lineage.get("calibration") or {}).get("digest") == manifest.digest
            and f"({calib.producer}, {calib.method}," in str(meta.lineage.get("transform", ""))
            and f"float_layers={calib.float_layers})" in str(meta.lineage.get("transform", ""))):
        return dst
    notify(f"int8: {fp32.name} -> {dst} (calibration {manifest.size} images from {manifest.source}:{manifest.split}, {calib.method})")
    reader = calibration_reader(manifest, ds, fp32_meta, batch_size=calib.batch_size)
    return to_int8_qdq(fp32, dst, reader, method=calib.method, producer=calib.producer, float_layers=calib.float_layers,
                       calibration={**manifest.summary(), "manifest": str(calib.manifest) if calib.manifest else None})


def export_precisions(cp: Checkpoint, precisions: Sequence[str], *, opts: ExportOptions = ExportOptions(),
                      calib: CalibrationOptions = CalibrationOptions(), notify: Notify = _stderr) -> dict[str, Path]:
    """The ONNX file of each precision for checkpoint `cp` (fp32 is always made: the others derive from it)."""
    out = {"fp32": ensure_fp32(cp, opts, notify)}
    if "fp16" in precisions:
        out["fp16"] = ensure_fp16(cp, out["fp32"], opts, notify)
    if "int8" in precisions:
        out["int8"] = ensure_int8(cp, out["fp32"], calib, opts, notify)
    return {p: out[p] for p in precisions}


# --- engines -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EngineOptions:
    backend: str = "auto"  # auto | tensorrt | onnxruntime
    min_batch: int = 1
    opt_batch: int = 32
    max_batch: int = 256
    workspace_mib: int = 1024
    timing_cache: Optional[Path] = None
    strongly_typed: Optional[bool] = None
    optimization_level: Optional[int] = None
    threads: Optional[int] = None
    device: int = 0


def choose_backend(requested: str) -> tuple[str, str]:
    """(backend, why): TensorRT when importable with a GPU (or asked for), else onnxruntime."""
    from gear_trt.backends.tensorrt import tensorrt_status

    if requested not in ("auto", "tensorrt", "onnxruntime"):
        raise ConfigError(f"unknown backend {requested!r}", "choose auto, tensorrt or onnxruntime")
    if requested == "onnxruntime":
        return "onnxruntime", "asked for"
    ok, why = tensorrt_status()
    if requested == "tensorrt" and not ok:
        raise BackendUnavailable(f"TensorRT cannot run here: {why}", "install TensorRT on a CUDA machine, or use --backend onnxruntime")
    return ("tensorrt", why) if ok else ("onnxruntime", why)


def onnx_for_engine(backend: str, precision: str, strongly_typed: Optional[bool]) -> str:
    """Which ONNX precision the engine of `precision` is built from on `backend`."""
    if backend == "onnxruntime":
        return precision
    from gear_trt.backends import tensorrt as trt_backend

    return trt_backend.plan_build(trt_backend.detect_features(trt_backend.trt), precision, strongly_typed=strongly_typed).onnx_precision


def build_one(onnx_path: Path, engine: Path, precision: str, backend: str, opts: EngineOptions, notify: Notify = _stderr) -> Path:
    if backend == "tensorrt":
        from gear_trt.backends.tensorrt import build_engine

        return build_engine(onnx_path, engine, precision=precision, min_batch=opts.min_batch, opt_batch=opts.opt_batch, max_batch=opts.max_batch,
                            workspace_mib=opts.workspace_mib, timing_cache=opts.timing_cache, strongly_typed=opts.strongly_typed,
                            optimization_level=opts.optimization_level, device=opts.device)
    from gear_trt.backends.onnxrt import build_ort_engine

    have = read_meta(onnx_path).precision
    if have != precision:  # never a silent precision change
        raise ConfigError(f"{onnx_path.name} is {have}; an onnxruntime {precision} model needs the {precision} ONNX", f"export it with --precision {precision}")
    out = build_ort_engine(onnx_path, engine, threads=opts.threads)
    if precision == "fp16" and read_sidecar(out).section("onnxruntime")["fp16_tensors"] == 0:
        notify(f"note: onnxruntime's CPU provider computes {out.name} in fp32 (its weights are the fp16-rounded ones); fp16 arithmetic needs TensorRT or a GPU provider")
    return out


def build_checkpoint_engines(cp: Checkpoint, precisions: Sequence[str], backend: str, eopts: EngineOptions, *, opts: ExportOptions = ExportOptions(),
                             calib: CalibrationOptions = CalibrationOptions(), notify: Notify = _stderr) -> dict[str, Path]:
    """Engines (TensorRT or onnxruntime) of each precision for `cp`, exporting the ONNX files they need."""
    needed = sorted({onnx_for_engine(backend, p, eopts.strongly_typed) for p in precisions}, key=PRECISIONS.index)
    onnx_files = export_precisions(cp, needed, opts=opts, calib=calib, notify=notify)
    out = {}
    for p in precisions:
        src = onnx_files[onnx_for_engine(backend, p, eopts.strongly_typed)]
        dst = cp.engine(p, backend)
        notify(f"build-engine: {src.name} -> {dst} ({backend}, {p})")
        out[p] = build_one(src, dst, p, backend, eopts, notify)
    return out


def build_onnx_engine(onnx_path: Path, precision: Optional[str], backend: str, eopts: EngineOptions, out_dir: Optional[Path] = None,
                      notify: Notify = _stderr) -> Path:
    """An engine from one ONNX file. fp16 from an fp32 file is converted first (an explicit, recorded
    ONNX transform); int8 needs the Q/DQ file, which takes a calibration set: export it."""
    from gear_trt.export.precision import to_fp16

    have = read_meta(onnx_path).precision
    precision = precision or have
    need = onnx_for_engine(backend, precision, eopts.strongly_typed)
    base = (out_dir or onnx_path.parent) / base_name(onnx_path)
    src = onnx_path
    if need != have:
        if need == "fp16" and have == "fp32":
            src = base.with_name(f"{base.name}.fp16.onnx")
            notify(f"fp16: {onnx_path.name} -> {src}")
            to_fp16(onnx_path, src)
        else:
            raise ConfigError(f"a {precision} {backend} engine builds from the {need} ONNX; {onnx_path.name} is {have}",
                              "export that precision from the checkpoint: `gear-trt export CKPT --precision int8` (INT8 needs calibration images)")
    dst = engine_path(base, precision, backend)
    notify(f"build-engine: {src.name} -> {dst} ({backend}, {precision})")
    return build_one(src, dst, precision, backend, eopts, notify)

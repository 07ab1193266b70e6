"""How deployment artifacts are named, and what a command's SOURCE argument names.

Inside a run, the folders come from RunDir (gear_trt.rundir, the one owner of a run's layout):

    RUN_DIR/checkpoints/<stage>.pt
    RUN_DIR/onnx/<stage>.<precision>.onnx          fp32 | fp16 | int8 (Q/DQ)
    RUN_DIR/onnx/calibration.json                  the INT8 calibration-set manifest used
    RUN_DIR/engines/<stage>.<precision>.engine     TensorRT (+ .engine.json sidecar)
    RUN_DIR/engines/<stage>.<precision>.ort.onnx   onnxruntime equivalent (+ .ort.onnx.json sidecar)

Outside a run, files go next to their source: ckpt.pt -> ckpt.<precision>.onnx -> ckpt.<precision>.engine.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

from gear_trt.choices import ENGINE_SUFFIX, ONNX_SUFFIX, PRECISIONS
from gear_trt.errors import ArtifactError, ConfigError, GearWarning
from gear_trt.rundir import RunDir

PathLike = Union[str, "os.PathLike[str]"]
_PRECISION_SUFFIX = re.compile(r"\.(" + "|".join(PRECISIONS) + r")$")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    name: str  # the stage name ("backbone", "grown", "era") or the file stem
    path: Path
    onnx_dir: Path
    engine_dir: Path

    def onnx(self, precision: str) -> Path:
        return self.onnx_dir / f"{self.name}.{precision}.onnx"

    def engine(self, precision: str, backend: str) -> Path:
        return engine_path(self.engine_dir / self.name, precision, backend)


def engine_path(base: Path, precision: str, backend: str) -> Path:
    """base "dir/backbone" -> dir/backbone.<precision>.engine (TensorRT) or .ort.onnx (onnxruntime)."""
    return base.with_name(f"{base.name}.{precision}{ENGINE_SUFFIX[backend]}")


def base_name(onnx_path: PathLike) -> str:
    """"backbone.fp16.onnx" -> "backbone"; "model.onnx" -> "model"."""
    stem = Path(onnx_path).name
    for suffix in (ENGINE_SUFFIX["onnxruntime"], ONNX_SUFFIX):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return _PRECISION_SUFFIX.sub("", stem)


def run_checkpoints(run_dir: PathLike, stages: Optional[Sequence[str]] = None) -> list[Checkpoint]:
    """The checkpoints of a run, in pipeline order (summary.json), optionally only `stages`."""
    run = RunDir.open(run_dir)
    found = run.stage_checkpoints()
    if not found:
        raise ArtifactError(f"{run.path} has no checkpoints", "run `gear-trt grow` first, or pass a checkpoint (.pt) or ONNX file")
    missing = run.missing_checkpoints()
    asked = [s for s in stages or missing if s in missing]
    if stages and asked:
        raise ArtifactError(f"stage {asked[0]}'s checkpoint {run.path / missing[asked[0]]} is missing",
                            f"re-run the pipeline to recreate it (gear-trt grow --resume --out {run.path}), or leave {asked[0]} out of --stages")
    for name in asked:
        warnings.warn(f"skipping stage {name}: its checkpoint {run.path / missing[name]} is missing", GearWarning, stacklevel=2)
    if stages:
        names = [n for n, _ in found]
        unknown = [s for s in stages if s not in names]
        if unknown:
            raise ConfigError(f"{run.path} has no stage(s) {', '.join(unknown)}", f"choose from {', '.join(names)}")
        found = [(n, p) for n, p in found if n in stages]
    return [Checkpoint(n, p, run.onnx_dir, run.engines_dir) for n, p in found]


def source_checkpoints(source: PathLike, stages: Optional[Sequence[str]] = None, out: Optional[PathLike] = None) -> list[Checkpoint]:
    """A run directory's checkpoints, or one checkpoint file; `out` overrides where ONNX/engines go."""
    source = Path(source)
    if RunDir.is_run_dir(source):
        cps = run_checkpoints(source, stages)
    elif source.is_file() and source.suffix in (".pt", ".pth"):
        cps = [Checkpoint(source.stem, source, source.parent, source.parent)]
    elif not source.exists():
        raise ArtifactError(f"{source} does not exist", "pass a run directory, a checkpoint (.pt) or an ONNX file")
    else:
        raise ConfigError(f"{source} is neither a run directory nor a checkpoint", "pass RUN_DIR or RUN_DIR/checkpoints/<stage>.pt")
    if out is not None:
        cps = [dataclasses.replace(c, onnx_dir=Path(out), engine_dir=Path(out)) for c in cps]
    return cps


def parse_list(text: Optional[str], allowed: Optional[Sequence[str]] = None, what: str = "value") -> list[str]:
    """"a,b" -> ["a", "b"], each checked against `allowed`."""
    if not text:
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if allowed is not None:
        bad = [t for t in items if t not in allowed]
        if bad:
            raise ConfigError(f"unknown {what} {', '.join(bad)}", f"choose from {', '.join(allowed)}")
    return items

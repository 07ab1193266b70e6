"""What a finished run's final model costs to deploy: its int8 ONNX file's size and its onnxruntime batch-1 latency.

The file is the one `gear-trt export RUN --precision int8 --stages <final>` makes (the same code and
defaults: RUN/onnx/<stage>.int8.onnx, Q/DQ calibrated on 512 training images, RUN/onnx/calibration.json),
so a later export finds it up to date. It is timed by `gear-trt bench`'s code on onnxruntime's CPU
provider at batch 1 with one intra-op thread (reproducible, and what a small device runs), after
WARMUP untimed calls, over ITERATIONS calls: seconds per model.

The result is RUN/deploy_cost.json (RunDir.deploy_cost_path), a one-row table in bench.json's format
plus the checksums it was measured from: measure() reuses it while the final checkpoint and the int8
file are unchanged. It is not a stage: summary.json and the training time do not see it.

The sweep calls this (a SPEC's `deploy_cost: true`); it lives in the pipeline layer because the sweep
may not import export and evaluate (tests/test_layering.py). Stdlib at import time.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

from gear_trt.errors import ArtifactError
from gear_trt.io import sha256_file
from gear_trt.records import BenchRow

if TYPE_CHECKING:
    from gear_trt.export.layout import Checkpoint
    from gear_trt.rundir import RunDir

PRECISION = "int8"
BATCH, THREADS, WARMUP, ITERATIONS = 1, 1, 20, 200
FORMAT = "gear-trt-bench/1"


def final_checkpoint(run: "RunDir") -> "Checkpoint":
    """The checkpoint of the run's last stage (its final model), with the run's onnx/ and engines/ folders."""
    from gear_trt.export.layout import run_checkpoints

    summary = run.load_summary()
    last = summary.stages[-1].name if summary is not None and summary.stages else None
    found = [cp for cp in run_checkpoints(run.path) if cp.name == last]
    if not found:
        raise ArtifactError(f"{run.path} has no checkpoint of its final stage ({last or 'no finished stage'})",
                            f"re-run the pipeline to recreate it (gear-trt grow --resume --out {run.path})")
    return found[0]


def read(run: "RunDir") -> Optional[dict[str, Any]]:
    """The recorded cost: {int8_bytes, ort_latency_ms (p50), stage, ...}; None if never measured or unreadable."""
    try:
        data = run.read_json(run.deploy_cost_path)
    except ArtifactError:
        return None
    rows = data.get("rows") if isinstance(data, dict) and data.get("format") == FORMAT else None
    row = BenchRow.from_dict(rows[0]) if isinstance(rows, list) and len(rows) == 1 else None
    if row is None or row.status != "ok" or row.size_bytes is None or row.latency is None or not math.isfinite(row.latency.p50_ms):
        return None
    settings = data.get("settings") or {}
    return {"int8_bytes": row.size_bytes, "ort_latency_ms": row.latency.p50_ms, "stage": row.model, "artifact": row.artifact,
            "checkpoint_sha256": settings.get("checkpoint_sha256"), "onnx_sha256": settings.get("onnx_sha256"),
            "settings": settings}


def current(run: "RunDir", cp: Optional["Checkpoint"] = None) -> Optional[dict[str, Any]]:
    """read(run), if it was measured on the final checkpoint and int8 file now on disk (else None: measure again)."""
    rec = read(run)
    if rec is None:
        return None
    cp = cp or final_checkpoint(run)
    onnx = cp.onnx(PRECISION)
    ok = (rec["stage"] == cp.name and onnx.is_file() and rec["checkpoint_sha256"] == sha256_file(cp.path)
          and rec["onnx_sha256"] == sha256_file(onnx)
          and all(rec["settings"].get(k) == v for k, v in (("batch", BATCH), ("threads", THREADS), ("iterations", ITERATIONS))))
    return rec if ok else None


def measure(run: "RunDir", notify: Callable[[str], None] = print) -> tuple[dict[str, Any], bool]:
    """(the recorded cost, whether it was measured now): export the final model to int8 (unless its file is
    up to date), time it, write RUN/deploy_cost.json. Reuses a current record without loading anything."""
    from gear_trt.evaluate.table import benchmark_artifact, save_table
    from gear_trt.export.deploy import CalibrationOptions, ExportOptions, export_precisions

    cp = final_checkpoint(run)
    rec = current(run, cp)
    if rec is not None:
        return rec, False
    t0 = time.perf_counter()
    summary = run.load_summary()
    calib = CalibrationOptions(manifest=run.onnx_dir / "calibration.json", source=(summary.data if summary else None) or "builtin")
    onnx = export_precisions(cp, [PRECISION], opts=ExportOptions(), calib=calib, notify=notify)[PRECISION]
    row = benchmark_artifact(onnx, model=cp.name, latency_batch=BATCH, throughput_batch=BATCH, warmup=WARMUP, iterations=ITERATIONS,
                             device="cpu", threads=THREADS)
    if row.status != "ok":
        raise ArtifactError(f"timing {onnx} in onnxruntime {row.status}", "run `gear-trt bench` on it to see why")
    save_table(run.deploy_cost_path, [row], backend="onnxruntime", device="cpu", batch=BATCH, threads=THREADS, warmup=WARMUP,
               iterations=ITERATIONS, data="none", stage=cp.name, checkpoint_sha256=sha256_file(cp.path),
               onnx_sha256=sha256_file(onnx), seconds=time.perf_counter() - t0)
    rec = read(run)
    assert rec is not None  # just written
    return rec, True

"""The deployment table: checkpoints x precisions x backends, with size, accuracy, robustness and speed.

Ultralytics' benchmark pattern (one row per exported format, a status column instead of a crash)
with robustness added: each row is measured on the artifact itself (the ONNX file in onnxruntime,
the engine in TensorRT), so a precision's accuracy cost and speed gain sit side by side.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from gear_trt.errors import GearError
from gear_trt.evaluate.latency import measure_latency
from gear_trt.records import BenchRow  # the rows bench.json holds (the report reads them back)

if TYPE_CHECKING:
    from gear_trt.data.imageset import ImageSet
    from gear_trt.energy import EnergyMeter

PathLike = Union[str, "os.PathLike[str]"]


def artifact_size(path: PathLike) -> int:
    """Bytes a deployment carries: the file, or for a checkpoint the model's tensors only (not optimiser state)."""
    path = Path(path)
    if path.suffix in (".pt", ".pth"):
        from gear_trt.artifacts.checkpoint import load_checkpoint

        state = load_checkpoint(path)["model"]
        return int(sum(t.numel() * t.element_size() for t in state.values() if hasattr(t, "numel")))
    return path.stat().st_size


def benchmark_artifact(path: PathLike, *, model: str = "", data: Optional["ImageSet"] = None, corruptions: str = "none",
                       latency_batch: int = 1, throughput_batch: int = 64, warmup: int = 20, iterations: int = 200,
                       device: Optional[str] = None, threads: Optional[int] = None, limit: Optional[int] = None,
                       progress: bool = False, meter: Optional["EnergyMeter"] = None, energy_seconds: float = 2.0) -> BenchRow:
    """Measure one artifact (checkpoint, ONNX file or engine); a user-fixable failure becomes the row's status.

    With a real energy `meter` (not NullMeter), inference at the throughput batch runs for at least
    `energy_seconds` under the meter (polling meters need a window of many samples) and the row gets
    joules per image: the whole device's energy over that window divided by the images inferred."""
    from gear_trt.backends import load_runner
    from gear_trt.evaluate.accuracy import (
        clean_accuracy,
        corruption_accuracy,
        spread_subset,
    )

    path = Path(path)
    row = BenchRow(model=model or path.name, precision="?", backend="?", artifact=str(path))
    try:
        runner = load_runner(path, device=device, threads=threads)
        row.precision, row.backend = runner.precision, runner.backend
        row.size_bytes = artifact_size(path)
        with runner:
            row.details["runner"] = runner.describe()
            if row.details["runner"].get("optimised_file"):  # an onnxruntime "engine", not the plain ONNX file
                row.backend = "onnxruntime-opt"
            if data is not None:
                eval_set = spread_subset(data, limit)
                row.clean_acc = clean_accuracy(runner, eval_set, progress=progress).accuracy
                sweep = corruption_accuracy(runner, eval_set, corruptions, progress=progress)
                if sweep is not None:
                    row.corruption_acc = sweep["mean_corruption_acc"]
                    row.details["corruptions"] = sweep
            row.latency = measure_latency(runner, batch_size=latency_batch, warmup=warmup, iterations=iterations)
            big = min(throughput_batch, runner.max_batch or throughput_batch)
            if big > latency_batch:
                row.throughput = measure_latency(runner, batch_size=big, warmup=max(2, warmup // 10), iterations=max(10, iterations // 10))
            if meter is not None and meter.kind != "none":
                with meter.measure() as m:
                    window = measure_latency(runner, batch_size=big, warmup=0, iterations=1, min_seconds=energy_seconds)
                assert m.reading is not None
                row.joules_per_image = m.reading.per_item(window.batch * window.iterations)
                row.details["energy"] = {**m.reading.to_dict(), "images": window.batch * window.iterations}
    except GearError as exc:
        row.status = f"failed: {exc.message}"
    return row


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _ms(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_table(rows: Sequence[BenchRow]) -> str:
    """A fixed-width text table, one line per row."""
    head = ["model", "precision", "backend", "size KiB", "clean %", "corrupt %", "p50 ms", "p90 ms", "p99 ms", "img/s", "mJ/img", "status"]
    lines = [head]
    for r in rows:
        tp = r.throughput or r.latency
        lines.append([
            r.model, r.precision, r.backend, "-" if r.size_bytes is None else f"{r.size_bytes / 1024:.1f}",
            _pct(r.clean_acc), _pct(r.corruption_acc),
            _ms(r.latency.p50_ms if r.latency else None), _ms(r.latency.p90_ms if r.latency else None), _ms(r.latency.p99_ms if r.latency else None),
            "-" if tp is None else f"{tp.throughput:.0f}@{tp.batch}",
            "-" if r.joules_per_image is None else f"{1e3 * r.joules_per_image:.3f}", r.status,
        ])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = ["  ".join(str(c).ljust(w) if i in (0, 1, 2, 11) else str(c).rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def environment() -> dict[str, Any]:
    """Versions and hardware the numbers belong to."""
    from gear_trt import __version__
    from gear_trt.backends import available_backends
    from gear_trt.backends.onnxrt import cpu_name

    env: dict[str, Any] = {"gear_trt": __version__, "python": platform.python_version(), "machine": platform.machine(), "cpu": cpu_name(),
                           "cpu_count": os.cpu_count(), "backends": available_backends()}
    for mod in ("torch", "onnxruntime", "onnx"):
        try:
            env[mod] = __import__(mod).__version__
        except ImportError:
            env[mod] = None
    return env


def table_json(rows: Sequence[BenchRow], **settings: Any) -> dict[str, Any]:
    return {"format": "gear-trt-bench/1", "environment": environment(), "settings": settings, "rows": [r.to_dict() for r in rows]}


def save_table(path: PathLike, rows: Sequence[BenchRow], **settings: Any) -> Path:
    from gear_trt.io import atomic_write_text

    return atomic_write_text(path, json.dumps(table_json(rows, **settings), indent=2, default=str) + "\n")

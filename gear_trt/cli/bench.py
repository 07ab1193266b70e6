"""`gear-trt bench SOURCE...`: the deployment table (size, accuracy, robustness, latency, throughput).

SOURCE is any mix of checkpoints (.pt, run in PyTorch), ONNX files (onnxruntime), engines
(TensorRT .engine/.plan, onnxruntime .ort.onnx) and run directories (every checkpoint, ONNX file and
engine the run holds). Latency is p50/p90/p99 at batch 1 after warm-up; throughput at a larger batch;
energy per image at that batch where a meter exists (NVML, jtop, INA3221; `--energy`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", metavar="SOURCE", nargs="+", help="checkpoints, ONNX files, engines or run directories")
    parser.add_argument("--data", metavar="SRC", default="builtin", help="test data for accuracy ('none' to time only; default builtin)")
    parser.add_argument("--corruptions", choices=("none", "subset", "full"), default="none", help="corruption sweep per row (default none)")
    parser.add_argument("--limit", type=int, default=None, help="accuracy on N evenly spaced test images only")
    parser.add_argument("--batch", type=int, default=1, help="latency batch size (default 1)")
    parser.add_argument("--throughput-batch", type=int, default=64, help="throughput batch size (default 64)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch, onnxruntime); set it for reproducible CPU numbers")
    parser.add_argument("--device", default=None, help="torch: cpu/cuda; onnxruntime: cpu/cuda/tensorrt; TensorRT: GPU index")
    parser.add_argument("--energy", default="auto", choices=("auto", "nvml", "jtop", "ina3221", "none"),
                        help="energy meter for joules per image (default auto: NVML, jtop, INA3221, else none)")
    parser.add_argument("--json", metavar="OUT", default=None,
                        help="also write the table as JSON (default for a single run directory: RUN/bench.json, which `gear-trt report` reads)")


def expand_sources(sources: list[str]) -> list[tuple[str, Path]]:
    """(row name, artifact) for every file, and for a run directory its checkpoints, ONNX files and engines."""
    from gear_trt.errors import ArtifactError
    from gear_trt.export.layout import base_name, run_checkpoints
    from gear_trt.rundir import RunDir

    out: list[tuple[str, Path]] = []
    for s in sources:
        p = Path(s)
        if RunDir.is_run_dir(p):
            for cp in run_checkpoints(p):
                out.append((cp.name, cp.path))
            for f in RunDir(p).deploy_artifacts():
                out.append((base_name(f).split(".")[0], f))
        elif p.is_file():
            out.append((base_name(p) if p.suffix == ".onnx" else p.stem.split(".")[0], p))
        else:
            raise ArtifactError(f"{p} does not exist", "pass checkpoints, ONNX files, engines or run directories")
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    from gear_trt.energy import auto_meter
    from gear_trt.evaluate.table import benchmark_artifact, format_table, save_table
    from gear_trt.rundir import RunDir

    data = None
    if args.data not in ("none", ""):
        from gear_trt.data import load_source

        data = load_source(args.data, "test")
    sources = expand_sources(args.sources)
    meter = auto_meter(args.energy)
    print(f"energy: {meter.source}", file=sys.stderr)
    rows = []
    try:
        for name, path in sources:
            rows.append(benchmark_artifact(path, model=name, data=data, corruptions=args.corruptions, latency_batch=args.batch,
                                           throughput_batch=args.throughput_batch, warmup=args.warmup, iterations=args.iterations,
                                           device=args.device, threads=args.threads, limit=args.limit, progress=True, meter=meter))
    finally:
        meter.close()
    models = list(dict.fromkeys(r.model for r in rows))
    precisions, backends = ["fp32", "fp16", "int8"], ["torch", "onnxruntime", "onnxruntime-opt", "tensorrt"]
    rows.sort(key=lambda r: (models.index(r.model), precisions.index(r.precision) if r.precision in precisions else 9,
                             backends.index(r.backend) if r.backend in backends else 9))
    print(format_table(rows))
    out = args.json or (str(RunDir(args.sources[0]).bench_path) if len(args.sources) == 1 and RunDir.is_run_dir(args.sources[0]) else None)
    if out:
        print(f"bench: {out}", file=sys.stderr)
        save_table(out, rows, data=args.data, corruptions=args.corruptions, batch=args.batch, throughput_batch=args.throughput_batch,
                   warmup=args.warmup, iterations=args.iterations, threads=args.threads, energy_meter=meter.info())
    return 0 if all(r.status == "ok" for r in rows) else 1

"""`gear-trt bench SOURCE...`: the deployment table (size, accuracy, robustness, latency, throughput).

SOURCE is any mix of checkpoints (.pt, run in PyTorch), ONNX files (onnxruntime), engines
(TensorRT .engine/.plan, onnxruntime .ort.onnx) and run directories (every checkpoint, ONNX file and
engine the run holds). Latency is p50/p90/p99 at batch 1 after warm-up; throughput at a larger batch;
energy per image at that batch where a meter exists (NVML, jtop, INA3221; `--energy`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gear_trt.cli.common import add_evaluation_arguments, at_least


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", metavar="SOURCE", nargs="+", help="checkpoints, ONNX files, engines or run directories")
    add_evaluation_arguments(parser, timing_only=True)
    parser.add_argument("--batch", type=at_least(1), default=1, metavar="N", help="latency batch size (default 1)")
    parser.add_argument("--throughput-batch", type=at_least(1), default=64, metavar="N", help="throughput batch size (default 64)")
    parser.add_argument("--warmup", type=at_least(0), default=20, metavar="N", help="untimed runs first (default 20)")
    parser.add_argument("--iterations", type=at_least(1), default=200, metavar="N", help="timed runs (default 200; set --threads for reproducible CPU numbers)")
    parser.add_argument("--energy", default="auto", choices=("auto", "nvml", "jtop", "ina3221", "none"),
                        help="energy meter for joules per image (default auto: NVML, jtop, INA3221, else none)")
    parser.add_argument("--json", metavar="OUT", default=None,
                        help="also write the table as JSON (default for a single run directory: RUN/bench.json, which `gear-trt report` reads)")


def expand_sources(sources: list[str]) -> list[tuple[str, Path]]:
    """(row name, artifact) for every file, and for a run directory its checkpoints, ONNX files and engines."""
    from gear_trt.choices import ONNX_SUFFIX
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
            out.append((base_name(p) if p.suffix == ONNX_SUFFIX else p.stem.split(".")[0], p))
        else:
            raise ArtifactError(f"{p} does not exist", "pass checkpoints, ONNX files, engines or run directories")
    return out


def run(args: argparse.Namespace) -> int:
    from gear_trt.cli.common import holding_runs

    with holding_runs(args.sources, "bench"):  # not while grow still writes the run, and grow not meanwhile
        return _bench(args)


def _bench(args: argparse.Namespace) -> int:
    import sys

    from gear_trt.choices import PRECISIONS
    from gear_trt.energy import auto_meter
    from gear_trt.errors import ArtifactError
    from gear_trt.evaluate.table import benchmark_artifact, format_table, save_table
    from gear_trt.rundir import RunDir

    sources = expand_sources(args.sources)  # cheap: a missing file fails before the data loads
    data = None
    if args.data not in ("none", ""):
        from gear_trt.data import load_source

        data = load_source(args.data, "test")
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
    backends = ["torch", "onnxruntime", "onnxruntime-opt", "tensorrt"]
    rows.sort(key=lambda r: (models.index(r.model), PRECISIONS.index(r.precision) if r.precision in PRECISIONS else 9,
                             backends.index(r.backend) if r.backend in backends else 9))
    print(format_table(rows))
    out = args.json or (str(RunDir(args.sources[0]).bench_path) if len(args.sources) == 1 and RunDir.is_run_dir(args.sources[0]) else None)
    if out:
        print(f"bench: {out}", file=sys.stderr)
        save_table(out, rows, data=args.data, corruptions=args.corruptions, batch=args.batch, throughput_batch=args.throughput_batch,
                   warmup=args.warmup, iterations=args.iterations, threads=args.threads, energy_meter=meter.info())
    failed = [r for r in rows if r.status != "ok"]
    if failed:  # every failure is a user-fixable one (benchmark_artifact turns GearErrors into a status)
        first = failed[0]
        raise ArtifactError(f"{len(failed)} of {len(rows)} rows failed, e.g. {first.model}: {first.status.removeprefix('failed: ')}",
                            "fix or leave out those sources; the table above has the others")
    return 0

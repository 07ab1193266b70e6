"""`gear-trt build-engine SOURCE`: FP32/FP16/INT8 engines, with TensorRT when it can run here.

SOURCE is a run directory (all checkpoints, or --stages), one checkpoint (.pt) or one ONNX file.
With TensorRT importable and a GPU, TensorRT engines are built (RUN_DIR/engines/<stage>.<p>.engine +
.engine.json); otherwise the onnxruntime equivalents (optimised model files, <stage>.<p>.ort.onnx +
sidecar), and one line says which backend was used and why. A precision is never silently changed:
one the backend cannot build is an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gear_trt.choices import PRECISIONS
from gear_trt.cli.common import at_least
from gear_trt.cli.export import add_export_arguments, export_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE", help="a run directory, a checkpoint (.pt) or an ONNX file")
    parser.add_argument("--precision", default=None, help=f"comma-separated {','.join(PRECISIONS)} (default: all for a run/checkpoint, the file's own for ONNX)")
    parser.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime"), default="auto", help="default: TensorRT if usable, else onnxruntime")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default RUN_DIR/engines or the source's folder)")
    g = parser.add_argument_group("engine")
    g.add_argument("--min-batch", type=at_least(1), default=1, metavar="N", help="smallest batch the engine takes (default 1)")
    g.add_argument("--opt-batch", type=at_least(1), default=32, metavar="N", help="batch TensorRT tunes for (default 32)")
    g.add_argument("--max-batch", type=at_least(1), default=256, metavar="N", help="largest batch the engine takes (default 256)")
    g.add_argument("--workspace-mib", type=at_least(1), default=1024, metavar="MIB", help="TensorRT workspace limit (default 1024)")
    g.add_argument("--timing-cache", metavar="PATH", default=None, help="TensorRT timing cache to read and update")
    typing = g.add_mutually_exclusive_group()
    typing.add_argument("--strongly-typed", dest="strongly_typed", action="store_true", default=None, help="TensorRT 10+: types from the ONNX, no precision flags")
    typing.add_argument("--weakly-typed", dest="strongly_typed", action="store_false", help="TensorRT <= 10: FP16/INT8 builder flags (default where they exist)")
    g.add_argument("--opt-level", type=int, choices=range(6), default=None, metavar="0-5", help="TensorRT builder optimisation level 0-5")
    g.add_argument("--threads", type=at_least(1), default=None, metavar="N", help="onnxruntime threads used while optimising")
    add_export_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from gear_trt.cli.common import holding_runs

    with holding_runs([args.source], "build-engine"):  # not while grow still writes the run, and grow not meanwhile
        return _build_engine(args)


def _build_engine(args: argparse.Namespace) -> int:
    from gear_trt.export.deploy import (
        EngineOptions,
        build_checkpoint_engines,
        build_onnx_engine,
        choose_backend,
    )
    from gear_trt.errors import ConfigError
    from gear_trt.export.layout import parse_list, source_checkpoints

    if not args.min_batch <= args.opt_batch <= args.max_batch:
        raise ConfigError(f"batches must satisfy --min-batch <= --opt-batch <= --max-batch, got {args.min_batch}, {args.opt_batch}, {args.max_batch}",
                          "e.g. --min-batch 1 --opt-batch 32 --max-batch 256")
    backend, why = choose_backend(args.backend)
    print(f"build-engine: using {backend} ({'TensorRT: ' + why if backend == 'tensorrt' else why})", file=sys.stderr)
    eopts = EngineOptions(backend=backend, min_batch=args.min_batch, opt_batch=args.opt_batch, max_batch=args.max_batch,
                          workspace_mib=args.workspace_mib, timing_cache=Path(args.timing_cache) if args.timing_cache else None,
                          strongly_typed=args.strongly_typed, optimization_level=args.opt_level, threads=args.threads)
    precisions = parse_list(args.precision, PRECISIONS, "precision")
    source = Path(args.source)
    if source.suffix == ".onnx":
        if len(precisions) > 1:
            raise ConfigError("one ONNX file builds one precision", "pass --precision once, or give the run directory / checkpoint")
        path = build_onnx_engine(source, precisions[0] if precisions else None, backend, eopts, Path(args.out) if args.out else None)
        print(path)
        return 0
    checkpoints = source_checkpoints(source, parse_list(args.stages) or None, args.out)
    opts, calib = export_settings(args, checkpoints)
    for cp in checkpoints:
        for precision, path in build_checkpoint_engines(cp, precisions or list(PRECISIONS), backend, eopts, opts=opts, calib=calib).items():
            print(f"{cp.name}\t{precision}\t{backend}\t{path}")
    return 0

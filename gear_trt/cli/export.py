"""`gear-trt export SOURCE`: checkpoints -> ONNX (fp32, and fp16 / int8 Q/DQ derived from it).

SOURCE is a run directory (all its checkpoints, or --stages) or one checkpoint (.pt). Files go to
RUN_DIR/onnx/<stage>.<precision>.onnx, or next to the checkpoint, or --out DIR. The INT8 calibration
set is a manifest (calibration/README.md): --calibration PATH is reused if it exists and made there if
not (default RUN_DIR/onnx/calibration.json, or calibration.json in the output folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gear_trt.choices import PRECISIONS
from gear_trt.cli.common import at_least


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with build-engine (which exports the ONNX files it needs)."""
    g = parser.add_argument_group("export")
    g.add_argument("--stages", metavar="A,B", default=None, help="only these stages of a run (default: all)")
    g.add_argument("--opset", type=at_least(7), default=None, help="ONNX opset (default 17 for TensorRT 8.5+; the dynamo exporter needs >= 18)")
    g.add_argument("--dynamo", action="store_true", help="use torch's dynamo exporter (opset >= 18, TensorRT 10+; needs onnxscript)")
    g.add_argument("--parity-data", metavar="SRC", default="builtin", help="real test images for the PyTorch/ONNX parity check ('none': random inputs only)")
    g.add_argument("--force", action="store_true", help="re-export even when the files are up to date")
    c = parser.add_argument_group("INT8 calibration")
    c.add_argument("--calibration", metavar="PATH", default=None, help="calibration manifest to reuse, or to create if missing")
    c.add_argument("--calib-source", metavar="SRC", default=None, help="data source of a new manifest (default: the run's data, else builtin)")
    c.add_argument("--calib-size", type=at_least(1), default=512, help="images in a new manifest, class-balanced (default 512)")
    c.add_argument("--calib-seed", type=at_least(0), default=0, help="seed of a new manifest (default 0)")
    c.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default="minmax", help="activation range calibration (default minmax)")
    c.add_argument("--int8-float-layers", type=at_least(0), default=1, metavar="N",
                   help="keep up to N more layers float: those whose quantization moves the logits most on the calibration set (default 1; 0: off)")
    c.add_argument("--int8-producer", choices=("onnxruntime", "modelopt"), default="onnxruntime",
                   help="who inserts the Q/DQ nodes (modelopt: optional extra, opset >= 19, TensorRT 10+ only)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE", help="a run directory or a checkpoint (.pt)")
    parser.add_argument("--precision", default=",".join(PRECISIONS), help=f"comma-separated: {', '.join(PRECISIONS)} (default all)")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default RUN_DIR/onnx or the checkpoint's folder)")
    add_export_arguments(parser)


def _run_data(source: Path) -> Any:
    """The data source the run at `source` trained on (None if unknown)."""
    from gear_trt.errors import ArtifactError
    from gear_trt.rundir import RunDir

    try:
        summary = RunDir(source).load_summary()
    except ArtifactError:
        return None
    return summary.data if summary is not None else None


def export_settings(args: argparse.Namespace, checkpoints: list[Any]) -> tuple[Any, Any]:
    """(ExportOptions, CalibrationOptions) from the shared arguments."""
    from gear_trt.export.deploy import CalibrationOptions, ExportOptions

    source = Path(args.source)
    manifest = Path(args.calibration) if args.calibration else checkpoints[0].onnx_dir / "calibration.json"
    calib_source = args.calib_source or (_run_data(source) if source.is_dir() else None) or "builtin"
    parity = None if args.parity_data in ("none", "") else args.parity_data
    return (ExportOptions(opset=args.opset, dynamo=args.dynamo, parity_source=parity, force=args.force),
            CalibrationOptions(manifest=manifest, source=str(calib_source), size=args.calib_size, seed=args.calib_seed,
                               method=args.calib_method, producer=args.int8_producer, float_layers=args.int8_float_layers))


def run(args: argparse.Namespace) -> int:
    from gear_trt.cli.common import holding_runs

    with holding_runs([args.source], "export"):  # not while grow still writes the run, and grow not meanwhile
        return _export(args)


def _export(args: argparse.Namespace) -> int:
    from gear_trt.export.deploy import export_precisions
    from gear_trt.export.layout import parse_list, source_checkpoints

    precisions = parse_list(args.precision, PRECISIONS, "precision") or ["fp32"]
    checkpoints = source_checkpoints(args.source, parse_list(args.stages) or None, args.out)
    opts, calib = export_settings(args, checkpoints)
    for cp in checkpoints:
        for precision, path in export_precisions(cp, precisions, opts=opts, calib=calib).items():
            print(f"{cp.name}\t{precision}\t{path}")
    return 0

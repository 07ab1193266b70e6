#!/usr/bin/env python
"""Deployment benchmark on this machine: one checkpoint x {fp32, fp16, int8} x {torch, onnxruntime,
onnxruntime-optimised, TensorRT when present}, plus the two reference points the toolkit is held to:

  * a plain `torch.onnx.export` of the same model run with onnxruntime's defaults (the toolkit's fp32
    ONNX must be at least as fast at batch 1);
  * a plain `quantize_static` of that plain model (for comparison with the toolkit's TensorRT-ready
    INT8 Q/DQ, whose target is at most 0.75x the fp32 latency).

    python tools/bench_deploy.py                              # trains a VGG-19 at 6% width briefly, then measures
    python tools/bench_deploy.py --checkpoint run/checkpoints/era.pt --corruptions subset --threads 1

Latency comparisons are interleaved (round-robin over all sessions, best median of the rounds), so
a burst of load on a shared machine hits every configuration alike. Prints the table and writes
OUT/bench.json.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from gear_trt.choices import PRECISIONS  # noqa: E402 - after the sys.path line above

SHARED_ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train_model(out: Path, epochs: int, data: str, width: float) -> Path:
    from gear_trt.data import BatchLoader, load_source
    from gear_trt.models import build_model, scaled_spec
    from gear_trt.train import TrainConfig, train

    spec = scaled_spec("vgg19", width)
    ds = load_source(data, "train")
    loader = BatchLoader(ds, 128, train=True, device="cpu", seed=0)
    ckpt = out / "backbone.pt"
    log(f"training VGG-19 at {width:.0%} width for {epochs} epochs on {data} ({len(ds)} images)")
    train(build_model(spec), loader, TrainConfig(epochs=epochs, device="cpu", lr=0.05), ckpt_path=ckpt, spec=spec, classes=ds.classes, stage="backbone")
    return ckpt


def plain_artifacts(ckpt: Path, out: Path, calib_data: np.ndarray) -> dict[str, Any]:
    """What a user gets without the toolkit: torch.onnx.export with its defaults, quantize_static with its defaults."""
    import torch
    from onnxruntime.quantization import quantize_static

    from gear_trt.models import load_model

    model, spec, _ = load_model(ckpt)
    x = torch.randn(1, spec.in_channels, spec.input_size, spec.input_size)
    plain = out / "plain.onnx"
    note = "torch.onnx.export defaults (dynamo)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (x,), str(plain))
        except Exception as exc:  # the dynamo default needs onnxscript; the legacy exporter is then the plain path
            note = f"torch.onnx.export(dynamo=False) defaults (dynamo failed: {type(exc).__name__})"
            torch.onnx.export(model, (x,), str(plain), dynamo=False)
    import onnxruntime as ort

    inp = ort.InferenceSession(str(plain)).get_inputs()[0]
    step = inp.shape[0] if isinstance(inp.shape[0], int) else 64  # a plain export has a fixed batch of 1
    batches = iter([{inp.name: calib_data[i : i + step]} for i in range(0, len(calib_data) - step + 1, step)])

    class Reader:
        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            return next(batches, None)

    plain_q = out / "plain.int8.onnx"
    quantize_static(str(plain), str(plain_q), Reader())
    return {"fp32": plain, "int8": plain_q, "note": note}


def interleaved_latency(fns: dict[str, Callable[[], Any]], rounds: int, iterations: int, warmup: int = 20) -> dict[str, dict[str, float]]:
    """Round-robin timing of batch-1 calls; per config the best (lowest) p50/p90/p99 over the rounds."""
    best: dict[str, dict[str, float]] = {k: {"p50_ms": 1e9, "p90_ms": 1e9, "p99_ms": 1e9} for k in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    for _ in range(rounds):
        for key, fn in fns.items():
            t = np.empty(iterations)
            for i in range(iterations):
                start = time.perf_counter()
                fn()
                t[i] = time.perf_counter() - start
            p50, p90, p99 = np.percentile(t * 1e3, [50, 90, 99])
            for k, v in (("p50_ms", p50), ("p90_ms", p90), ("p99_ms", p99)):
                best[key][k] = min(best[key][k], float(v))
    return best


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="a gear-trt checkpoint (default: train one)")
    p.add_argument("--train-epochs", type=int, default=15)
    p.add_argument("--width", type=float, default=0.06, help="VGG-19 width multiplier when training (default 0.06)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-deploy")
    p.add_argument("--data", default=str(SHARED_ZIP) if SHARED_ZIP.is_file() else "builtin", help="test data for accuracy")
    p.add_argument("--calib-source", default="builtin")
    p.add_argument("--corruptions", choices=("none", "subset", "full"), default="subset")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every backend (default: each library's default)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--throughput-batch", type=int, default=64)
    args = p.parse_args(argv)

    import onnxruntime as ort
    import torch

    from gear_trt.backends import available_backends, load_runner
    from gear_trt.backends.onnxrt import build_ort_engine
    from gear_trt.backends.tensorrt import build_engine
    from gear_trt.data import load_source
    from gear_trt.artifacts import preprocess_images
    from gear_trt.evaluate.table import benchmark_artifact, format_table, table_json
    from gear_trt.export.calibration import calibration_reader, resolve_manifest
    from gear_trt.export.deploy import CalibrationOptions, export_precisions
    from gear_trt.export.layout import source_checkpoints
    from gear_trt.artifacts import read_meta
    from gear_trt.io import atomic_write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = args.checkpoint or train_model(args.out, args.train_epochs, "builtin", args.width)
    cp = source_checkpoints(ckpt, out=args.out)[0]
    calib = CalibrationOptions(manifest=args.out / "calibration.json", source=args.calib_source)
    onnx_files = export_precisions(cp, list(PRECISIONS), calib=calib)
    artifacts: list[tuple[str, Path]] = [("torch", ckpt)] + [(f"onnx-{k}", v) for k, v in onnx_files.items()]
    for precision, src in onnx_files.items():
        artifacts.append((f"ort-opt-{precision}", build_ort_engine(src, cp.engine(precision, "onnxruntime"), threads=args.threads)))
    if available_backends()["tensorrt"] == "":
        for precision in PRECISIONS:
            src = onnx_files["int8" if precision == "int8" else "fp32"]
            artifacts.append((f"trt-{precision}", build_engine(src, cp.engine(precision, "tensorrt"), precision=precision)))

    test = load_source(args.data, "test")
    log(f"measuring {len(artifacts)} artifacts on {len(test)} test images ({args.data}), corruptions: {args.corruptions}")
    rows = [benchmark_artifact(path, model=cp.name, data=test, corruptions=args.corruptions, iterations=args.iterations,
                               throughput_batch=args.throughput_batch, threads=args.threads, progress=True) for _, path in artifacts]

    print(format_table(rows), flush=True)
    atomic_write_json(args.out / "bench.json", table_json(rows, data=args.data, corruptions=args.corruptions, threads=args.threads))

    # Reference points, timed interleaved with the toolkit's runners.
    manifest, train_ds = resolve_manifest(calib.manifest, source=args.calib_source)
    meta = read_meta(onnx_files["fp32"])
    calib_data = calibration_reader(manifest, train_ds, meta).data
    plain = plain_artifacts(ckpt, args.out, calib_data)
    so = ort.SessionOptions()
    if args.threads:
        so.intra_op_num_threads = args.threads
    x1 = preprocess_images(test.images[:1], meta.preprocess).numpy()
    sessions = {k: ort.InferenceSession(str(plain[k]), so if args.threads else None, providers=["CPUExecutionProvider"]) for k in ("fp32", "int8")}
    runners = {k: load_runner(v, threads=args.threads).activate() for k, v in (("torch", ckpt), ("fp32", onnx_files["fp32"]), ("int8", onnx_files["int8"]),
                                                                             ("fp32-opt", cp.engine("fp32", "onnxruntime")), ("int8-opt", cp.engine("int8", "onnxruntime")))}
    fns: dict[str, Callable[[], Any]] = {
        "plain fp32 (onnxruntime defaults)": lambda: sessions["fp32"].run(None, {sessions["fp32"].get_inputs()[0].name: x1}),
        "plain int8 (quantize_static defaults)": lambda: sessions["int8"].run(None, {sessions["int8"].get_inputs()[0].name: x1}),
        "toolkit fp32 ONNX": lambda: runners["fp32"].infer(x1),
        "toolkit fp32 optimised": lambda: runners["fp32-opt"].infer(x1),
        "toolkit int8 Q/DQ ONNX": lambda: runners["int8"].infer(x1),
        "toolkit int8 optimised": lambda: runners["int8-opt"].infer(x1),
        "pytorch eager": lambda: runners["torch"].infer(x1),
    }
    lat = interleaved_latency(fns, args.rounds, args.iterations)
    for r in runners.values():
        r.deactivate()
    base = lat["plain fp32 (onnxruntime defaults)"]["p50_ms"]
    fp32 = lat["toolkit fp32 ONNX"]["p50_ms"]
    ratios = {
        "toolkit_fp32_vs_plain_fp32": fp32 / base,
        "toolkit_int8_vs_toolkit_fp32": lat["toolkit int8 Q/DQ ONNX"]["p50_ms"] / fp32,
        "toolkit_int8_opt_vs_toolkit_fp32_opt": lat["toolkit int8 optimised"]["p50_ms"] / lat["toolkit fp32 optimised"]["p50_ms"],
        "plain_int8_vs_plain_fp32": lat["plain int8 (quantize_static defaults)"]["p50_ms"] / base,
        "plain_fp32_vs_pytorch_eager": base / lat["pytorch eager"]["p50_ms"],
    }

    print("\nbatch-1 latency, interleaved, best of rounds (ms):")
    for k, v in lat.items():
        print(f"  {k:<40} p50 {v['p50_ms']:.4f}  p90 {v['p90_ms']:.4f}  p99 {v['p99_ms']:.4f}")
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    print(f"plain export: {plain['note']}")
    result = table_json(rows, data=args.data, corruptions=args.corruptions, threads=args.threads, iterations=args.iterations)
    result.update(interleaved_latency=lat, ratios=ratios, plain_export=plain["note"], checkpoint=str(ckpt),
                  targets={"toolkit_fp32_vs_plain_fp32": "<= 1.0", "toolkit_int8_vs_toolkit_fp32": "<= 0.75"})
    atomic_write_json(args.out / "bench.json", result)
    log(f"wrote {args.out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

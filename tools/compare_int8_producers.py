#!/usr/bin/env python
"""INT8 Q/DQ from onnxruntime's quantize_static vs NVIDIA ModelOpt, on one model and one calibration set.

    python tools/compare_int8_producers.py MODEL.fp32.onnx --out DIR [--produce onnxruntime modelopt]

For each producer asked for: quantizes MODEL with gear_trt.export.precision.to_int8_qdq on the same
calibration manifest (DIR/calibration.json, made from the built-in training images if missing; the
classifier stays float for both, ORT's extra float-layer search off so the placement is the
producer's own) and writes DIR/<producer>.int8.onnx and DIR/<producer>.json (seconds, Q/DQ counts).
Then evaluates MODEL and every DIR/*.int8.onnx present with onnxruntime on the CPU on the built-in
test set, and writes DIR/comparison.json and prints a table: Q/DQ nodes, quantized weight tensors,
the Conv/Gemm layers left float, top-1 accuracy and agreement with fp32.

ModelOpt pins its own onnx / onnxruntime-gpu, so it lives in its own virtual environment: run the
tool there with --produce modelopt, then here with --produce onnxruntime; the second run evaluates
both files with this environment's onnxruntime (docs/deploy.md has the figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def produce(src: Path, out: Path, producer: str) -> dict[str, Any]:
    import onnx

    from gear_trt.artifacts import read_meta
    from gear_trt.export.calibration import calibration_reader, resolve_manifest
    from gear_trt.export.precision import qdq_summary, to_int8_qdq

    meta = read_meta(src)
    manifest, ds = resolve_manifest(out / "calibration.json", source="builtin")
    reader = calibration_reader(manifest, ds, meta)
    dst = out / f"{producer}.int8.onnx"
    t0 = time.perf_counter()
    to_int8_qdq(src, dst, reader, producer=producer, method="minmax", float_layers=0, calibration=manifest.summary())
    seconds = time.perf_counter() - t0
    record = {"producer": producer, "seconds": round(seconds, 2), "calibration": manifest.summary(), **qdq_summary(onnx.load(str(dst)))}
    (out / f"{producer}.json").write_text(json.dumps(record, indent=1))
    return record


def float_layers(model: Any) -> list[str]:
    """Conv/Gemm/MatMul nodes whose weight does not come through a DequantizeLinear."""
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and producers.get(n.input[1]) != "DequantizeLinear"]


def evaluate(path: Path, data: Any, labels: Any, reference: Any = None) -> dict[str, Any]:
    import numpy as np
    import onnx
    import onnxruntime as ort

    from gear_trt.artifacts import read_meta

    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = read_meta(path).input_name
    t0 = time.perf_counter()
    logits = np.concatenate([session.run(None, {name: data[i:i + 250]})[0] for i in range(0, len(data), 250)])
    seconds = time.perf_counter() - t0
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    top1 = logits.argmax(1)
    return {"file": path.name, "accuracy": float((top1 == labels).mean()), "images": int(len(labels)),
            "agreement_with_fp32": None if reference is None else float((top1 == reference).mean()),
            "quantize_nodes": ops.count("QuantizeLinear"), "dequantize_nodes": ops.count("DequantizeLinear"),
            "float_layers": float_layers(model), "file_bytes": path.stat().st_size, "ort_cpu_seconds": round(seconds, 2),
            "top1": top1}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="an fp32 ONNX written by `gear-trt export`")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--produce", nargs="*", default=["onnxruntime"], choices=("onnxruntime", "modelopt"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for producer in args.produce:
        r = produce(args.model, args.out, producer)
        print(f"{producer}: {r['seconds']:.1f} s, {r['quantize_nodes']} Q / {r['dequantize_nodes']} DQ, opset {r['opset']}", file=sys.stderr)

    from gear_trt.artifacts import preprocess_images, read_meta
    from gear_trt.data import load_source

    test = load_source("builtin", "test", progress=False)
    data = preprocess_images(test.images, read_meta(args.model).preprocess).numpy()
    labels = test.labels.numpy()
    fp32 = evaluate(args.model, data, labels)
    rows = [fp32] + [evaluate(p, data, labels, fp32["top1"]) for p in sorted(args.out.glob("*.int8.onnx"))]
    for row in rows:
        made = args.out / row["file"].replace(".int8.onnx", ".json")
        row["quantize_seconds"] = json.loads(made.read_text())["seconds"] if made.is_file() else None
        row.pop("top1")
    (args.out / "comparison.json").write_text(json.dumps(rows, indent=1))
    print("| model | accuracy % | agrees with fp32 % | Q / DQ nodes | float Conv/Gemm | quantize s | file KB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        agree = "-" if r["agreement_with_fp32"] is None else f"{100 * r['agreement_with_fp32']:.1f}"
        print(f"| {r['file']} | {100 * r['accuracy']:.1f} | {agree} | {r['quantize_nodes']} / {r['dequantize_nodes']} | "
              f"{('(all)' if r['agreement_with_fp32'] is None else ', '.join(r['float_layers']) or '-')} | {r['quantize_seconds'] or '-'} | {r['file_bytes'] // 1024} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

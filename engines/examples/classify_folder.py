#!/usr/bin/env python3
"""Classify every image under a folder with a gear-trt model and print images/s.

    python engines/examples/classify_folder.py model.onnx photos/            # onnxruntime, CPU
    python engines/examples/classify_folder.py model.engine photos/ -b 64    # TensorRT (+ model.engine.json)

Uses only gear_trt.runtime (numpy, onnxruntime or tensorrt+torch) and Pillow to decode images.
When the images sit in folders named like the model's classes (test/cat/0001.jpg), the accuracy
is printed too. Throughput is reported twice: the model alone (preprocessed batches in, logits
out) and end to end (preprocessing + inference + top-k; JPEG decoding excluded).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp"}


def find_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def decode(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an ONNX file or a TensorRT engine with its .json sidecar")
    parser.add_argument("folder", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("-b", "--batch-size", type=int, default=32)
    parser.add_argument("-k", "--top-k", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--show", type=int, default=10, help="print the predictions of the first N images")
    parser.add_argument("--repeat", type=int, default=1, help="time the model over the set this many times")
    args = parser.parse_args(argv)

    from gear_trt.errors import GearError
    from gear_trt.runtime import load

    try:
        paths = find_images(args.folder) if args.folder.is_dir() else []
        if not paths:
            raise GearError(f"no images found under {args.folder}", f"point it at a folder with {', '.join(sorted(EXTENSIONS))} files")
        model = load(args.model, num_threads=args.threads)
        images = [decode(p) for p in paths]

        # End to end: preprocessing + inference + top-k, in batches.
        start = time.perf_counter()
        preds = [model.predict(images[i : i + args.batch_size], k=args.top_k) for i in range(0, len(images), args.batch_size)]
        end_to_end = time.perf_counter() - start

        # Model alone, on already preprocessed batches (after one warm-up batch).
        batches = [model.preprocess(images[i : i + args.batch_size]) for i in range(0, len(images), args.batch_size)]
        model.infer(batches[0])
        start = time.perf_counter()
        for _ in range(max(1, args.repeat)):
            for x in batches:
                model.infer(x)
        model_only = (time.perf_counter() - start) / max(1, args.repeat)
    except GearError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    labels = [name for p in preds for name in p.labels]
    top = [(names, scores) for p in preds for names, scores in zip(p.classes, p.scores.tolist())]
    for path, (names, scores) in list(zip(paths, top))[: args.show]:
        ranked = ", ".join(f"{name} {score:.3f}" for name, score in zip(names, scores))
        print(f"{path.relative_to(args.folder)}: {ranked}")
    print(f"{model!r}")
    n = len(images)
    print(f"{n} images, batch {args.batch_size}: model {n / model_only:.1f} images/s, end to end {n / end_to_end:.1f} images/s")
    known = [(p.parent.name, label) for p, label in zip(paths, labels) if p.parent.name in model.classes]
    if known:
        correct = sum(truth == label for truth, label in known)
        print(f"accuracy {correct / len(known):.4f} on {len(known)} images in class-named folders")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`gear-trt eval PATH`: clean and corruption accuracy of a checkpoint (.pt), ONNX file or engine.

The model is evaluated as deployed: an ONNX file in onnxruntime, an engine in TensorRT (or the
onnxruntime "engine"), a checkpoint in PyTorch. --corruptions subset sweeps the 15 benchmark
corruptions at severities 1, 3, 5 on 500 evenly spaced images; full sweeps all images and severities.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from gear_trt.cli.common import add_evaluation_arguments, at_least
from gear_trt.errors import GearWarning


class ClassNamesWarning(GearWarning):
    """The evaluation data names its classes differently from the model."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="checkpoint (.pt), ONNX file (.onnx) or engine (.engine/.plan, .ort.onnx)")
    add_evaluation_arguments(parser)
    parser.add_argument("--split", default="test", choices=("train", "test", "val"), help="split to evaluate (default test)")
    parser.add_argument("--seed", type=at_least(0), default=0, help="seed of the corruption sweep (default 0)")
    parser.add_argument("--batch-size", type=at_least(1), default=256, metavar="N", help="inference batch size (default 256)")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the results as JSON")


def run(args: argparse.Namespace) -> int:
    from gear_trt.backends import load_runner
    from gear_trt.data import load_source
    from gear_trt.evaluate.accuracy import (
        clean_accuracy,
        corruption_accuracy,
        corruptions_available,
        spread_subset,
    )
    from gear_trt.io import atomic_write_json

    ds = load_source(args.data, args.split)
    ds = spread_subset(ds, args.limit)
    runner = load_runner(args.path, device=args.device, threads=args.threads)
    model_classes, data_classes = tuple(runner.meta.classes), tuple(ds.classes)
    if len(model_classes) == len(data_classes) and model_classes != data_classes:  # a count mismatch is an error below
        k = next(i for i, (m, d) in enumerate(zip(model_classes, data_classes)) if m != d)
        warnings.warn(ClassNamesWarning(
            f"the data's class names differ from the model's (label {k}: model {model_classes[k]!r}, data {data_classes[k]!r}); "
            "accuracy compares label numbers, so check that this is the data the model was trained for"))
    result = {"path": str(args.path), "data": args.data, "split": args.split, "images": len(ds)}
    with runner:
        result.update(backend=runner.backend, precision=runner.precision)
        clean = clean_accuracy(runner, ds, batch_size=args.batch_size, progress=True)
        result["clean"] = clean.to_dict()
        print(f"{args.path}: {runner.backend} {runner.precision}: clean accuracy {100 * clean.accuracy:.2f}% ({clean.correct}/{clean.total})")
        if args.corruptions != "none":
            if not corruptions_available():
                print("eval: the corruption suite (gear_trt.corruptions) is not installed; clean accuracy only", file=sys.stderr)
            else:
                sweep = corruption_accuracy(runner, ds, args.corruptions, seed=args.seed, batch_size=args.batch_size, progress=True)
                assert sweep is not None
                result["corruptions"] = sweep
                print(f"mean corruption accuracy ({args.corruptions}: {sweep['n_images']} images): {100 * sweep['mean_corruption_acc']:.2f}%")
                for name, by_sev in sweep.get("acc", {}).items():
                    cells = "  ".join(f"s{s} {100 * a:5.1f}" for s, a in sorted(by_sev.items(), key=lambda kv: int(kv[0])))
                    print(f"  {name:<18} {cells}")
    if args.json:
        atomic_write_json(args.json, result)
    return 0

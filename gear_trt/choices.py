"""The choice lists, one table each: model families, pipelines, presets, precisions, engine file suffixes.

Every option, validation, file name and sort order reads these; none is written out elsewhere.
Stdlib only, so `gear-trt --help` can build its parsers from them without importing torch.
"""

from __future__ import annotations

import dataclasses

# Model families, in the order help texts list them (gear_trt/models registers one builder each).
FAMILIES: tuple[str, ...] = ("vgg19", "mobilenet_v1", "resnet18")
DEFAULT_FAMILY = "vgg19"  # when neither --arch nor a run/checkpoint to follow names one


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """What a `gear-trt grow --pipeline` runs (GEARNN.md's four methods)."""

    label: str  # the paper's name for it
    grows: bool  # backbone -> One-Shot Growth -> grown; else one fixed-size "small" stage
    augmented: bool  # every training stage sees ERA views (gearnn1, small-aug)
    robust_stage: bool  # a final ERA fine-tuning stage after growth (gearnn2)


PIPELINES: dict[str, Pipeline] = {
    "gearnn2": Pipeline("GEARnn-2", grows=True, augmented=False, robust_stage=True),
    "gearnn1": Pipeline("GEARnn-1", grows=True, augmented=True, robust_stage=False),
    "small-clean": Pipeline("Small(D_in)", grows=False, augmented=False, robust_stage=False),
    "small-aug": Pipeline("Small(D_aug)", grows=False, augmented=True, robust_stage=False),
}


@dataclasses.dataclass(frozen=True)
class Preset:
    """Epochs per stage of `gear-trt grow --preset` and the size of each stage's corruption sweep."""

    backbone_epochs: int
    grown_epochs: int
    robust_epochs: int
    baseline_epochs: int
    robust_images: int  # test images in each stage's corruption sweep (0: no sweep)
    robust_severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    curve_images: int = 0  # pre-corrupted test images scored after every epoch (time-to-accuracy curves; 0: none)


PRESETS: dict[str, Preset] = {
    # The paper's CIFAR-10 schedule: 40 / 1 / 40 / 40 epochs, baselines 160.
    "paper": Preset(40, 40, 40, 160, robust_images=10_000, curve_images=2000),
    # Minutes on a 2-core CPU with the built-in data; same proportions as the paper (baseline ~1.3x GEARnn-2).
    "quick": Preset(3, 3, 2, 11, robust_images=200, robust_severities=(1, 3, 5), curve_images=300),
    # The CPU protocol of docs/paper_comparison.md: the paper's proportions at 12 epochs (GEARnn-2 + Small(D_aug)
    # on 10,000 images: about 30 minutes of one CPU thread), scored on 1,000 test images per epoch.
    "cpu": Preset(12, 12, 12, 48, robust_images=1000, robust_severities=(1, 3, 5), curve_images=1000),
}

# Growth operators of One-Shot Growth (gear_trt/grow/growers.py implements each).
GROWERS: tuple[str, ...] = ("firefly", "gradmax", "random")

# Deployment precisions, in the order tables and file lists show them, with the bytes one weight takes.
PRECISION_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1}
PRECISIONS: tuple[str, ...] = tuple(PRECISION_BYTES)

# What `gear-trt build-engine` writes per backend: <stage>.<precision><suffix> (+ <file>.json sidecar).
ENGINE_SUFFIX: dict[str, str] = {"tensorrt": ".engine", "onnxruntime": ".ort.onnx"}
# Files read as serialized TensorRT engines (.plan and .trt are other tools' names for the same thing).
TENSORRT_SUFFIXES: tuple[str, ...] = (".engine", ".plan", ".trt")
ONNX_SUFFIX = ".onnx"
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pt", ".pth")

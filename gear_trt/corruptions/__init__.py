"""Common corruptions (Hendrycks & Dietterich 2019), batched in torch, faithful to the official
CIFAR-10-C / Tiny-ImageNet-C generator.

    from gear_trt.corruptions import corrupt, CORRUPTIONS, EXTRAS
    foggy = corrupt(images_uint8_nhwc, "fog", 3, seed=0, preset="cifar")

CORRUPTIONS are the 15 of the benchmark (their mean accuracy is the "robust accuracy"); EXTRAS
are the 4 held-out ones, reported apart. sweep() evaluates a predictor on all of them;
metrics.CorruptionResults holds the numbers; cifar_c loads the official .npy files.
"""

from gear_trt.corruptions.core import ALL_CORRUPTIONS, corrupt
from gear_trt.corruptions.metrics import CorruptionResults, mce, relative_mce
from gear_trt.corruptions.params import CORRUPTIONS, EXTRAS, PRESETS, SEVERITIES
from gear_trt.corruptions.sweep import sweep

__all__ = [
    "ALL_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRAS",
    "PRESETS",
    "SEVERITIES",
    "CorruptionResults",
    "corrupt",
    "mce",
    "relative_mce",
    "sweep",
]

"""Data: sources -> ImageSet (whole split in memory, uint8 NHWC) -> BatchLoader (device-side augmentation).

    ds = load_source("builtin", "train")          # or "cifar10:<root>", a folder, a .zip
    loader = BatchLoader(ds, 128, train=True, device="cuda", seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader: ...

See sources.py for the source formats and the broken-file policy, cache.py for the packed cache,
loader.py for augmentation and determinism.
"""

from gear_trt.data.cache import cache_root
from gear_trt.data.imageset import ImageSet, normalize, normalize_float, resize_images, to_float
from gear_trt.data.loader import Augment, BatchLoader, random_crop_flip, seeded_generator
from gear_trt.data.sources import BUILTIN_ZIP, BrokenImagesWarning, load_source, parse_source

__all__ = [
    "Augment",
    "BUILTIN_ZIP",
    "BatchLoader",
    "BrokenImagesWarning",
    "ImageSet",
    "cache_root",
    "load_source",
    "normalize",
    "normalize_float",
    "parse_source",
    "random_crop_flip",
    "resize_images",
    "seeded_generator",
    "to_float",
]

"""What the run commands check before their run directory exists: the data splits (classes, image
size, per-class subsets), that one training batch fits in them, and the device.

A user error found here leaves nothing behind: no run directory, no config, no manifest.
"""

from __future__ import annotations

from typing import Optional

from gear_trt.data import ImageSet, load_source
from gear_trt.errors import ConfigError, DataError
from gear_trt.pipeline.options import MAX_IMAGE_SIZE, TrainingOptions, flag_name


def load_splits(opts: TrainingOptions, *, progress: bool = True) -> tuple[ImageSet, ImageSet]:
    """(train, test) of `opts.data` at `opts.image_size`, cut to the per-class limits, checked for training."""
    train = load_source(opts.data, "train", image_size=opts.image_size, progress=progress)
    test = load_source(opts.data, "test", image_size=opts.image_size, progress=progress)
    if opts.image_size is None and _side(test) != _side(train) and _side(train) is not None:
        test = load_source(opts.data, "test", image_size=train.image_size, progress=progress)  # the model's input size
    train = per_class(train, opts.train_per_class, opts.seed)
    test = per_class(test, opts.test_per_class, opts.seed)
    check_splits(train, test, opts)
    return train, test


def per_class(ds: ImageSet, count: Optional[int], seed: int) -> ImageSet:
    """At most `count` images of each class, drawn with `seed` (None: all)."""
    return ds if count is None else ds.per_class(count, seed=seed)


def check_splits(train: ImageSet, test: ImageSet, opts: TrainingOptions) -> None:
    if train.num_classes < 2:
        raise DataError(f"{opts.data} has a single class ({train.classes[0]!r}); a classifier needs at least two",
                        "give train/ and test/ one folder per class, at least two classes")
    if tuple(train.classes) != tuple(test.classes):
        raise DataError(f"the train and test splits of {opts.data} hold different classes", "give both splits the same class folders")
    side = _side(train)
    if side is None or side < 8 or side % 8:
        h, w = train.images.shape[1:3]
        suggest = min(MAX_IMAGE_SIZE, max(8, 8 * round(max(h, w) / 8)))
        raise ConfigError(f"the images are {h}x{w}; the models take square images whose side is a multiple of 8",
                          f"pass --image-size {suggest} to resize them")
    limited = f" (with {flag_name('train_per_class')} {opts.train_per_class})" if opts.train_per_class is not None else ""
    if len(train) < opts.batch_size:
        raise ConfigError(f"the training split has {len(train)} images{limited}, fewer than one batch of {opts.batch_size}",
                          f"pass --batch-size {len(train)} or less, or use more images")


def _side(ds: ImageSet) -> Optional[int]:
    h, w = ds.images.shape[1:3]
    return int(h) if h == w else None

"""CIFAR-10/100 in torchvision's on-disk format ("cifar-10-batches-py", "cifar-100-python").

Those batch files are Python pickles, and unpickling can run arbitrary code. They are read with
a restricted Unpickler that resolves only the few globals a pickled numpy array needs (numpy's
array reconstructors, ndarray, dtype, and _codecs.encode for bytes); any other global in the
file is refused with a DataError, so a tampered file cannot execute anything.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from gear_trt.data.decode import check_fits_in_memory
from gear_trt.data.imageset import ImageSet, resize_images
from gear_trt.errors import DataError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# variant -> (folder, train files, test files, meta file, label key, class-names key)
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}

_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core."):]  # numpy 2 renamed the package
        return super().find_class(module, name)


def read_batch(path: Path) -> dict[str, Any]:
    """One CIFAR batch/meta file as a dict with str keys, without running code from it."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(f"{path} is not a readable CIFAR batch file ({exc})", "re-download the CIFAR python version") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR batch file (holds a {type(obj).__name__})", "re-download the CIFAR python version")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def find_folder(root: Path, variant: str) -> Path:
    folder, train, *_ = LAYOUT[variant]
    for candidate in (root / folder, root):
        if (candidate / train[0]).is_file():
            return candidate
    raise DataError(
        f"no {variant.upper()} python batches under {root} (looked for {folder}/{train[0]})",
        f"point {variant}:<root> at the folder holding {folder}/ (torchvision's download layout)",
    )


def fingerprint(root: Path, variant: str, split: str) -> list[Any]:
    folder = find_folder(root, variant)
    _, train, test, meta, *_ = LAYOUT[variant]
    files = (train if split == "train" else test) + [meta]
    return [[f, (folder / f).stat().st_size, (folder / f).stat().st_mtime_ns] for f in files if (folder / f).is_file()]


def load_cifar(root: Path, variant: str, split: str, image_size: Optional[int], max_per_class: Optional[int]) -> ImageSet:
    folder = find_folder(root, variant)
    _, train, test, meta, label_key, names_key = LAYOUT[variant]
    images, labels = [], []
    for file in train if split == "train" else test:
        path = folder / file
        if not path.is_file():
            raise DataError(f"{variant} batch file {path} is missing", "re-download the CIFAR python version")
        batch = read_batch(path)
        try:
            data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            label = np.asarray(batch[label_key], dtype=np.int64)
        except (KeyError, ValueError, TypeError) as exc:  # missing, or not arrays (a tampered file)
            raise DataError(f"{path} lacks CIFAR data or '{label_key}' ({type(exc).__name__}: {exc})",
                            "re-download the CIFAR python version") from None
        if label.ndim != 1 or len(label) != len(data):
            raise DataError(f"{path} has {len(data)} images but {len(label)} labels", "re-download the CIFAR python version")
        images.append(data.transpose(0, 2, 3, 1))
        labels.append(label)

    if (folder / meta).is_file():
        names = read_batch(folder / meta).get(names_key)
        if not isinstance(names, (list, tuple)) or not names:
            raise DataError(f"{folder / meta} has no list of class names under '{names_key}'", "re-download the CIFAR python version")
        classes = tuple(c.decode("latin1") if isinstance(c, bytes) else str(c) for c in names)
    elif variant == "cifar10":
        classes = CIFAR10_CLASSES
    else:
        raise DataError(f"{folder / meta} is missing (it names CIFAR-100's classes)", "re-download the CIFAR python version")

    label_all = np.concatenate(labels)
    if label_all.min() < 0 or label_all.max() >= len(classes):
        raise DataError(f"{folder} has labels outside 0..{len(classes) - 1}", "re-download the CIFAR python version")
    keep = np.arange(len(label_all))
    if max_per_class is not None:  # the first max_per_class of each class, in file order
        keep = np.concatenate([np.flatnonzero(label_all == k)[:max_per_class] for k in range(len(classes))])
        keep.sort()
    pixels = torch.from_numpy(np.ascontiguousarray(np.concatenate(images)[keep]))
    if image_size is not None and image_size != 32:
        check_fits_in_memory(len(pixels), image_size, image_size)
        pixels = torch.cat([resize_images(part, image_size) for part in pixels.split(4096)])
    return ImageSet(pixels, torch.from_numpy(label_all[keep]), classes, variant, split)

"""The packed cache: a decoded split saved as one uncompressed .npz of uint8 pixels.

Decoding JPEGs again every run (or every epoch) is what a Jetson's weak CPU cannot afford; a
packed split loads in a fraction of a second. Files live in `<cache root>/data/`, the root being
the `cache_dir` argument, else $GEAR_TRT_CACHE, else ~/.cache/gear-trt. A file's name carries a
hash of everything its content depends on (the source's file list with sizes and mtimes or zip
CRCs, the split, the image size), so a changed source never hits a stale file.

Files are written atomically and read with numpy's allow_pickle=False: loading a cache file
never runs code. An unreadable cache file is ignored (and rewritten), never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from gear_trt.data.imageset import ImageSet
from gear_trt.io import atomic_write

FORMAT = "gear-trt-packed/1"
ENV = "GEAR_TRT_CACHE"


def cache_root(cache_dir: Optional[str | os.PathLike] = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return Path.home() / ".cache" / "gear-trt"


def cache_key(parts: Any) -> str:
    """A stable hash of JSON-serialisable `parts` (plus this file format's version)."""
    blob = json.dumps([FORMAT, parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path(root: Path, name: str, split: str, image_size: Optional[int], key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "data"
    size = f"{image_size}px" if image_size else "native"
    return root / "data" / f"{slug}-{split}-{size}-{key[:20]}.npz"


def save(path: Path, ds: ImageSet) -> bool:
    """Write `ds` to `path` atomically; on an unwritable cache, warn and return False."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object, so numpy does not append ".npz" to the temp name
            np.savez(
                f,
                format=np.array(FORMAT),
                images=ds.images.cpu().numpy(),
                labels=ds.labels.cpu().numpy(),
                classes=np.array(ds.classes, dtype=str),
                skipped=np.array(ds.skipped, dtype=str),
                name=np.array(ds.name),
                split=np.array(ds.split),
            )

    try:
        atomic_write(path, write)
        return True
    except OSError as exc:
        warnings.warn(f"gear-trt: cannot write the data cache {path} ({exc}); set {ENV} to a writable folder", stacklevel=3)
        return False


def load(path: Path) -> Optional[ImageSet]:
    """The ImageSet in `path`, or None if it is missing or unreadable (then the caller re-packs)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != FORMAT:
                return None
            return ImageSet(
                images=torch.from_numpy(data["images"]),
                labels=torch.from_numpy(data["labels"].astype(np.int64, copy=False)),
                classes=tuple(str(c) for c in data["classes"]),
                name=str(data["name"]),
                split=str(data["split"]),
                skipped=tuple(str(s) for s in data["skipped"]),
            )
    except Exception as exc:  # noqa: BLE001 - a damaged cache file only costs a re-pack
        warnings.warn(f"gear-trt: ignoring the unreadable data cache {path} ({type(exc).__name__}: {exc}); re-packing", stacklevel=3)
        return None

"""Decode image files (JPEG, PNG, ...) into one packed uint8 NHWC array, in a thread pool.

PIL releases the GIL while it decodes, so threads give real parallelism without worker
processes (nothing to crash deep inside a worker). A file that cannot be read or decoded
is recorded with the reason, never raised from a thread; the caller decides what to do.
"""

from __future__ import annotations

import io
import os
import re
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Protocol, Sequence

import numpy as np
import torch

from gear_trt.data.imageset import resize_images
from gear_trt.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"})


class Reader(Protocol):
    """Reads one file's bytes by its name inside a source; safe to call from several threads."""

    def read(self, name: str) -> bytes: ...

    def close(self) -> None: ...


class DirReader:
    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def close(self) -> None:
        pass


class ZipReader:
    """One ZipFile handle per thread: a shared ZipFile's reference count is not thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._handles: list[zipfile.ZipFile] = []
        self._lock = threading.Lock()

    def read(self, name: str) -> bytes:
        handle = getattr(self._local, "zip", None)
        if handle is None:
            handle = zipfile.ZipFile(self.path)
            self._local.zip = handle
            with self._lock:
                self._handles.append(handle)
        return handle.read(name)

    def close(self) -> None:
        with self._lock:
            for handle in self._handles:
                handle.close()
            self._handles.clear()


def decode_image(data: bytes) -> np.ndarray:
    """Image file bytes -> uint8 [H, W, 3] RGB (grayscale, palette and RGBA are converted)."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:  # its message names an in-memory buffer, not the file
        raise ValueError("not an image file PIL can read") from None
    with image:
        return np.asarray(image.convert("RGB"))


def check_fits_in_memory(count: int, height: int, width: int) -> None:
    """DataError unless `count` uint8 RGB images of height x width take at most half of this machine's memory."""
    need = count * height * width * 3
    total = _physical_memory()
    if total and need > total // 2:
        raise DataError(f"{count} images at {height}x{width} need {need / 2**30:.1f} GiB in memory, more than half of this machine's "
                        f"{total / 2**30:.1f} GiB", "pass a smaller image size (--image-size) or fewer images (--train-per-class)")


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # not POSIX: no check
        return 0


@dataclass
class Packed:
    images: np.ndarray  # uint8 [N, H, W, 3], only the files that decoded
    keep: np.ndarray  # bool [len(names)]: which names made it into `images`
    broken: list[tuple[str, str]] = field(default_factory=list)  # (name, reason), in name order


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def pack(
    reader: Reader,
    names: Sequence[str],
    image_size: Optional[int],
    *,
    workers: Optional[int] = None,
    desc: str = "decoding",
    progress: bool = True,
    chunk: int = 256,
) -> Packed:
    """Decode `names` into one array of `image_size` squares (None: all must share one size)."""
    from tqdm.auto import tqdm

    n = len(names)
    broken: dict[int, str] = {}
    wrong_size: dict[int, tuple[int, int]] = {}
    keep = np.zeros(n, dtype=bool)

    found: Optional[tuple[int, int]] = (image_size, image_size) if image_size is not None else None
    for i in range(n if found is None else 0):  # no image_size: the first readable image sets the size
        try:
            height, width = decode_image(reader.read(names[i])).shape[:2]
            found = (height, width)
            break
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
            broken[i] = _reason(exc)
    if found is None:
        return Packed(np.zeros((0, 1, 1, 3), np.uint8), keep, [(names[i], r) for i, r in sorted(broken.items())])
    target: tuple[int, int] = found
    check_fits_in_memory(n, *target)
    out = np.empty((n, target[0], target[1], 3), dtype=np.uint8)

    def work(start: int) -> int:
        stop = min(n, start + chunk)
        for i in range(start, stop):
            if i in broken:
                continue
            try:
                pixels = decode_image(reader.read(names[i]))
            except Exception as exc:  # noqa: BLE001
                broken[i] = _reason(exc)
                continue
            if pixels.shape[:2] != target:
                if image_size is None:
                    wrong_size[i] = pixels.shape[:2]
                    continue
                pixels = resize_images(torch.tensor(pixels).unsqueeze(0), image_size)[0].numpy()
            out[i] = pixels
            keep[i] = True
        return stop - start

    pool = ThreadPoolExecutor(max_workers=workers or default_workers())
    try:
        with tqdm(total=n, desc=desc, unit="img", disable=not progress or None, leave=False) as bar:
            for done in pool.map(work, range(0, n, chunk)):
                bar.update(done)
    finally:  # on Ctrl-C, drop the chunks not started yet instead of decoding them all
        pool.shutdown(wait=True, cancel_futures=True)

    if wrong_size:
        first = next(i for i in range(n) if keep[i])
        i, (h, w) = min(wrong_size.items())
        raise DataError(
            f"images have different sizes: {names[i]} is {h}x{w} but {names[first]} is {target[0]}x{target[1]} "
            f"({len(wrong_size)} of {n} differ)",
            "pass an image size (image_size=..., --image-size) to resize them all",
        )
    images = out if keep.all() else out[keep]
    return Packed(images, keep, [(names[i], r) for i, r in sorted(broken.items())])


def _reason(exc: Exception) -> str:
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc).splitlines()[0]) if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

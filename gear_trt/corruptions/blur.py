"""Blur corruptions: defocus, glass, motion, zoom and gaussian blur."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from gear_trt.corruptions._ops import (
    DENSE_LIMIT,
    apply_dense,
    clipped_zoom,
    correlate2d,
    dense_operator,
    gaussian_filter,
    magick_motion_blur,
    to_float,
    to_uint8,
)
from gear_trt.corruptions._rng import ImageStreams


@lru_cache(maxsize=32)
def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The official disk(): an aliased disk on a 17x17 grid (wider for radius > 8), normalised,
    then cv2.GaussianBlur(ksize 3, or 5 past radius 8) to anti-alias it; cropped to its support."""
    if radius <= 8:
        span = torch.arange(-8, 9, dtype=torch.float64)
        ksize = 3
    else:
        span = torch.arange(-radius, radius + 1, dtype=torch.float64)
        ksize = 5
    yy, xx = torch.meshgrid(span, span, indexing="ij")
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).to(torch.float32)
    disk = (disk / disk.sum()).to(torch.float64)
    g = torch.exp(-((torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2) ** 2) / (2 * alias_blur ** 2))
    g = (g / g.sum()).to(torch.float32).to(torch.float64)
    blurred = correlate2d(disk.view(1, 1, *disk.shape), torch.outer(g, g), "reflect101")[0, 0]
    rows = torch.nonzero(blurred.abs().sum(1) > 0).flatten()
    cols = torch.nonzero(blurred.abs().sum(0) > 0).flatten()
    r = int(max(rows.max() - len(span) // 2, len(span) // 2 - rows.min()))
    c = int(max(cols.max() - len(span) // 2, len(span) // 2 - cols.min()))
    mid = len(span) // 2
    return blurred[mid - r: mid + r + 1, mid - c: mid + c + 1].to(torch.float32)


@lru_cache(maxsize=32)
def _defocus_operator(radius: float, alias_blur: float, h: int, w: int) -> torch.Tensor:
    kernel = disk_kernel(radius, alias_blur).to(torch.float64)
    return dense_operator(lambda x: correlate2d(x, kernel, "reflect101"), h, w).to(torch.float32)


def defocus_blur(images: torch.Tensor, p: tuple[float, float], rng: ImageStreams) -> torch.Tensor:
    radius, alias_blur = float(p[0]), float(p[1])
    x = to_float(images)
    h, w = x.shape[-2:]
    if h * w <= DENSE_LIMIT:
        return to_uint8(apply_dense(x, _defocus_operator(radius, alias_blur, h, w)))
    return to_uint8(correlate2d(x, disk_kernel(radius, alias_blur), "reflect101"))


def gaussian_blur(images: torch.Tensor, sigma: float, rng: ImageStreams) -> torch.Tensor:
    return to_uint8(gaussian_filter(to_float(images), float(sigma)))


def glass_shuffle_map(shifts: np.ndarray, h: int, w: int, delta: int) -> np.ndarray:
    """Where each pixel comes from after the official glass-blur walk: [N, H * W] source indices
    for per-image draws `shifts` [N, passes, steps, 2] of (dx, dy) in [-delta, delta).

    The official loop walks (h, w) from the bottom-right corner and does
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]` with (h', w') = (h + dy, w + dx). On a numpy image
    those are row views, so this copies x[h', w'] into x[h, w] and leaves x[h', w'] as it was: a
    sequence of copies, not swaps, which we keep. With delta = 1 (every CIFAR severity) the source
    is always up or left of the current pixel, not yet written in this pass, so a pass is one
    parallel gather; with delta = 2 (Tiny-ImageNet 4-5) the walk is replayed step by step.
    """
    n, passes = shifts.shape[:2]
    targets = np.array([r * w + c for r in range(h - delta, delta, -1) for c in range(w - delta, delta, -1)],
                       dtype=np.int64)
    source = np.tile(np.arange(h * w, dtype=np.int64), (n, 1))
    if len(targets) == 0:
        return source
    offsets = shifts[..., 1].astype(np.int64) * w + shifts[..., 0]  # [N, passes, steps]
    all_images = np.arange(n)
    for k in range(passes):
        if delta == 1:
            source[:, targets] = np.take_along_axis(source, targets + offsets[:, k], axis=1)
            continue
        for t, a in enumerate(targets):
            source[:, a] = source[all_images, a + offsets[:, k, t]]
    return source


def glass_blur(images: torch.Tensor, p: tuple[float, int, int], rng: ImageStreams) -> torch.Tensor:
    """Blur, locally shuffle pixels (see glass_shuffle_map), blur again."""
    sigma, delta, passes = float(p[0]), int(p[1]), int(p[2])
    n, h, w, _ = images.shape
    x = to_float(images)
    x = torch.floor(gaussian_filter(x, sigma) * 255.0)  # np.uint8(gaussian(...) * 255)
    steps = max(h - 2 * delta, 0) * max(w - 2 * delta, 0)
    if steps:
        shifts = rng.randint(-delta, delta, passes, steps, 2).cpu().numpy()  # (dx, dy)
        index = torch.from_numpy(glass_shuffle_map(shifts, h, w, delta)).to(x.device)
        index = index.unsqueeze(1).expand(n, x.shape[1], h * w)
        x = x.reshape(n, x.shape[1], h * w).gather(2, index).reshape(x.shape)
    return to_uint8(gaussian_filter(x / 255.0, sigma))


def motion_blur(images: torch.Tensor, p: tuple[float, float], rng: ImageStreams) -> torch.Tensor:
    radius, sigma = p
    angles = rng.uniform(low=-45.0, high=45.0, dtype=torch.float64)
    x = images.permute(0, 3, 1, 2).to(torch.float32)
    out = magick_motion_blur(x, float(radius), float(sigma), angles)
    return out.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@lru_cache(maxsize=16)
def _zoom_operator(factors: tuple[float, ...], h: int, w: int) -> torch.Tensor:
    """(identity + the sum of the clipped zooms) / (count + 1) as one matrix."""
    def apply(x: torch.Tensor) -> torch.Tensor:
        return (x + sum(clipped_zoom(x, f) for f in factors)) / (len(factors) + 1)

    return dense_operator(apply, h, w).to(torch.float32)


def zoom_blur(images: torch.Tensor, factors: tuple[float, ...], rng: ImageStreams) -> torch.Tensor:
    x = to_float(images)
    h, w = x.shape[-2:]
    if h * w <= DENSE_LIMIT:
        return to_uint8(apply_dense(x, _zoom_operator(tuple(factors), h, w)))
    out = torch.zeros_like(x)
    for factor in factors:
        out += clipped_zoom(x, factor)
    return to_uint8((x + out) / (len(factors) + 1))

"""The deploy-metadata preprocessing rule (gear_trt.artifacts.meta), in numpy and in torch.

`preprocess` (numpy alone: the deployment runtime) and `preprocess_images` (torch tensors on any
device: evaluation, calibration, parity checks) both apply the rule:

uint8 RGB images (HWC or NHWC) -> float32 NCHW:
  1. bilinear resize to input_size x input_size when H or W differs: half-pixel centres, no
     antialiasing, in float32, with the weights and the operation order of torch's CPU kernel
     for torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False);
  2. x = (pixel * scale - mean[c]) / std[c] in float32.

Every product and sum is rounded to float32 on its own: no fused multiply-add. That makes the
rule exactly reproducible in numpy and C++ (engines/src/preprocess.cpp repeats each operation
in the same order; tests/test_cpp_runtime.py checks the two agree bit for bit; change one,
change both). torch itself is not a portable reference: its x86 AVX2 (and ARM) builds let the
compiler fuse multiply-adds, so for scale ratios that are not short binary fractions (e.g.
32 -> 24) torch differs in the last bits (about 1e-4 on the 0..255 scale). When the target
size is 32 (every CIFAR model) or 64, all intermediate values are exact in float32 and the
result is bit-identical to torch's on any machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence, Union

import numpy as np

from gear_trt.artifacts.meta import COLORS, Preprocess
from gear_trt.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

F32 = np.float32

# What predict() accepts: one HWC image, an NHWC batch, or a list of HWC images of any sizes.
Images = Union[np.ndarray, Sequence[Any]]


def _check_image_array(arr: np.ndarray, what: str) -> None:
    if arr.dtype != np.uint8:
        raise DataError(
            f"{what} has dtype {arr.dtype}, expected uint8 pixels (0..255)",
            "pass the decoded image as uint8; from floats in [0, 1] use (x * 255).round().clip(0, 255).astype(np.uint8)",
        )
    if arr.shape[-1] != 3:
        if arr.ndim >= 3 and arr.shape[-3] == 3:
            fix = ("images are channels-last (NHWC); transpose an NCHW batch with images.transpose(0, 2, 3, 1)" if arr.ndim == 4
                   else "images are channels-last (HWC); transpose CHW with img.transpose(1, 2, 0)")
        elif arr.shape[-1] == 4:
            fix = "drop the alpha channel: img[..., :3] (or PIL's image.convert('RGB'))"
        elif arr.shape[-1] == 1:
            fix = "repeat the grey channel: np.repeat(img, 3, axis=-1) (or PIL's image.convert('RGB'))"
        else:
            fix = "pass RGB images shaped HxWx3 (one) or NxHxWx3 (a batch)"
        raise DataError(f"{what} has {arr.shape[-1]} channels (shape {tuple(arr.shape)}), expected 3", fix)
    if 0 in arr.shape:
        raise DataError(f"{what} is empty (shape {tuple(arr.shape)})", "pass at least one image of at least 1x1 pixels")


def as_image_batches(images: Images) -> list[np.ndarray]:
    """Validate `images` and return NHWC uint8 batches (one per distinct image size, in order)."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise DataError("no images given", "pass one HWC image, an NHWC batch, or a non-empty list of HWC images")
        arrays = [np.asarray(im) for im in images]
        for i, arr in enumerate(arrays):
            if arr.ndim != 3:
                raise DataError(f"image {i} has shape {tuple(arr.shape)}, expected HxWx3", "pass a list of HxWx3 uint8 arrays")
            _check_image_array(arr, f"image {i}")
        # Consecutive images of one size form one batch; order is kept.
        batches: list[np.ndarray] = []
        start = 0
        for i in range(1, len(arrays) + 1):
            if i == len(arrays) or arrays[i].shape != arrays[start].shape:
                batches.append(np.stack(arrays[start:i]))
                start = i
        return batches
    arr = np.asarray(images)
    if arr.ndim not in (3, 4):
        raise DataError(f"images have shape {tuple(arr.shape)}, expected HxWx3 or NxHxWx3", "pass uint8 RGB images, channels last")
    _check_image_array(arr, "images")  # before the batch axis is added, so a hint can tell one image from a batch
    return [arr[None] if arr.ndim == 3 else arr]


def resize_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and float32 weights (w0, w1) of each output position along one axis.

    Matches torch's CPU kernel: scale = in/out in float32, src = max(scale*(dst+0.5)-0.5, 0),
    i0 = min(floor(src), in-1), lambda = clamp(src-i0, 0, 1), i1 = i0+1 except at the last pixel.
    """
    scale = F32(in_size) / F32(out_size)
    dst = np.arange(out_size, dtype=F32)
    src = np.maximum(scale * (dst + F32(0.5)) - F32(0.5), F32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0.astype(F32), F32(0), F32(1)).astype(F32)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, (F32(1) - lam).astype(F32), lam


def resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of float32 NCHW `x` (half-pixel centres, no antialias), as torch without FMA.

    Order of operations (as torch): along W first, t = x[.., w0]*ww0 + x[.., w1]*ww1, for rows
    h0 and h1; then out = t(h0)*wh0 + t(h1)*wh1. Each product and sum rounds to float32.
    """
    if x.dtype != F32:
        raise TypeError("resize_bilinear expects float32")
    h0, h1, wh0, wh1 = resize_weights(x.shape[2], out_h)
    w0, w1, ww0, ww1 = resize_weights(x.shape[3], out_w)

    def along_w(rows: np.ndarray) -> np.ndarray:
        return rows[..., w0] * ww0 + rows[..., w1] * ww1

    top = along_w(x[:, :, h0, :])
    bottom = along_w(x[:, :, h1, :])
    return top * wh0[:, None] + bottom * wh1[:, None]


def check_color(color: str) -> str:
    order = str(color).upper()
    if order not in COLORS:
        raise ConfigError(f"unknown colour order {color!r}", f"use one of {', '.join(COLORS)}")
    return order


def preprocess_batch(batch: np.ndarray, pre: Preprocess, *, color: str = "RGB") -> np.ndarray:
    """One NHWC uint8 batch (validated) -> float32 NCHW, following `pre`."""
    size = pre.input_size
    # The model's channel order vs. the given images' order (e.g. OpenCV's BGR frames).
    if check_color(color) != check_color(pre.color):
        batch = batch[..., ::-1]
    x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(F32)
    if x.shape[2] != size or x.shape[3] != size:
        x = resize_bilinear(x, size, size)
    mean = np.asarray(pre.mean, dtype=F32).reshape(1, 3, 1, 1)
    std = np.asarray(pre.std, dtype=F32).reshape(1, 3, 1, 1)
    out = (x * F32(pre.scale) - mean) / std
    return np.ascontiguousarray(out, dtype=F32)


def preprocess(images: Images, pre: Preprocess, *, color: str = "RGB") -> np.ndarray:
    """uint8 images (HWC, NHWC, or a list of HWC of any sizes) -> float32 NCHW model input.

    `color` is the channel order of the given images; they are reordered to the model's
    (`pre.color`) when the two differ.
    """
    batches = [preprocess_batch(b, pre, color=color) for b in as_image_batches(images)]
    return batches[0] if len(batches) == 1 else np.concatenate(batches)


def preprocess_images(images: "torch.Tensor", pre: Preprocess) -> "torch.Tensor":
    """uint8 [N, H, W, 3] tensor -> float32 [N, 3, S, S] on the images' device, by the same rule
    (torch's interpolate is the reference the numpy resize reproduces)."""
    import torch
    import torch.nn.functional as F

    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
        raise DataError(f"expected uint8 [N, H, W, 3] images, got {images.dtype} {tuple(images.shape)}", "pass an ImageSet's images")
    x = images.permute(0, 3, 1, 2).float()
    if pre.color == "BGR":
        x = x.flip(1)
    size = pre.input_size
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    mean = torch.tensor(pre.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x * pre.scale - mean) / std).contiguous()

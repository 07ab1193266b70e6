"""corrupt(): one corruption at one severity on a batch of uint8 NHWC images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, TypeVar  # noqa: UP035 - runtime alias below must work on Python 3.8

import numpy as np
import torch

from gear_trt.corruptions import blur, digital, noise, weather
from gear_trt.corruptions._rng import ImageStreams
from gear_trt.corruptions.params import CORRUPTIONS, EXTRAS, PRESETS, SEVERITIES
from gear_trt.errors import ConfigError, DataError

ALL_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS + EXTRAS

_Fn = Callable[[torch.Tensor, Any, ImageStreams], torch.Tensor]
_FUNCTIONS: dict[str, _Fn] = {
    "gaussian_noise": noise.gaussian_noise,
    "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise,
    "speckle_noise": noise.speckle_noise,
    "defocus_blur": blur.defocus_blur,
    "glass_blur": blur.glass_blur,
    "motion_blur": blur.motion_blur,
    "zoom_blur": blur.zoom_blur,
    "gaussian_blur": blur.gaussian_blur,
    "snow": weather.snow,
    "fog": weather.fog,
    "spatter": weather.spatter,
    "brightness": digital.brightness,
    "contrast": digital.contrast,
    "elastic_transform": digital.elastic_transform,
    "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression,
    "saturate": digital.saturate,
}

ImageArray = TypeVar("ImageArray", np.ndarray, torch.Tensor)


def check_name(name: str) -> None:
    if name not in ALL_CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}", f"use one of: {', '.join(ALL_CORRUPTIONS)}")


def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ConfigError(f"unknown corruption preset {preset!r}", f"use one of: {', '.join(PRESETS)}")


def check_severity(severity: int) -> None:
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or int(severity) not in SEVERITIES:
        raise ConfigError(f"severity must be an integer from 1 to 5, got {severity!r}", "pass severity=1..5")


def corrupt(
    images: ImageArray,
    name: str,
    severity: int,
    *,
    seed: int = 0,
    preset: str = "cifar",
    index_offset: int = 0,
    indices: Sequence[int] | np.ndarray | torch.Tensor | None = None,
) -> ImageArray:
    """Apply corruption `name` at `severity` (1..5) to uint8 RGB images.

    images: [N, H, W, 3] or one [H, W, 3] image, a numpy array or a torch tensor on any device;
    the result has the same type, shape, dtype and device. preset: "cifar" (CIFAR-10-C constants,
    32x32 images) or "tinyimagenet" (Tiny-ImageNet-C constants, 64x64 images).

    Randomness is a pure function of (seed, name, severity, image index): image k of this call
    has index `indices[k]` if given, else `index_offset + k`. So corrupting a data set in any
    batch split, with the matching offsets, gives the same images as one call.
    """
    check_name(name)
    check_severity(severity)
    check_preset(preset)
    as_numpy = isinstance(images, np.ndarray)
    if not as_numpy and not isinstance(images, torch.Tensor):
        raise DataError(f"images must be a numpy array or a torch tensor, got {type(images).__name__}",
                        "pass uint8 NHWC images")
    batch = torch.from_numpy(np.ascontiguousarray(images)) if as_numpy else images
    if batch.dtype != torch.uint8:
        raise DataError(f"images must be uint8, got {batch.dtype}", "convert with images.astype(np.uint8) or .to(torch.uint8) from 0..255")
    single = batch.dim() == 3
    if single:
        batch = batch.unsqueeze(0)
    if batch.dim() != 4 or batch.shape[-1] != 3:
        raise DataError(f"images must be [N, H, W, 3] (or [H, W, 3]), got shape {tuple(batch.shape)}",
                        "pass RGB images in NHWC layout")
    n = batch.shape[0]
    if indices is None:
        index_list = list(range(int(index_offset), int(index_offset) + n))
    else:
        index_list = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]
        if len(index_list) != n:
            raise ConfigError(f"indices has {len(index_list)} entries for {n} images", "pass one index per image")
    if n == 0:
        out = batch.clone()
    else:
        severity = int(severity)
        params = PRESETS[preset][name][severity - 1]
        streams = ImageStreams(int(seed), name, severity, index_list, batch.device)
        if name == "frost":
            out = weather.frost(batch.contiguous(), params, streams, PRESETS[preset]["frost_scale"])
        else:
            out = _FUNCTIONS[name](batch.contiguous(), params, streams)
    if single:
        out = out[0]
    result: Any = out.cpu().numpy() if as_numpy else out
    return result

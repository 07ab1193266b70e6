"""Digital corruptions: brightness, contrast, elastic transform, pixelate, JPEG, and the saturate extra."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from gear_trt.corruptions._ops import (
    bilinear_sample,
    gaussian_filter,
    hsv_to_rgb,
    pil_box_resize,
    rgb_to_hsv,
    to_float,
    to_uint8,
)
from gear_trt.corruptions._rng import ImageStreams


def brightness(images: torch.Tensor, c: float, rng: ImageStreams) -> torch.Tensor:
    """V of HSV raised by c (skimage rgb2hsv -> hsv2rgb in the official code). With hue and
    saturation fixed every channel scales with V, so this is rgb * V' / V (grey V' for black)."""
    x = to_float(images)
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0, 1)
    scaled = x * (v_new / v.clamp(min=1e-12))
    return to_uint8(torch.where(v > 0, scaled, v_new.expand_as(x)))


def saturate(images: torch.Tensor, p: tuple[float, float], rng: ImageStreams) -> torch.Tensor:
    factor, offset = p
    hsv = rgb_to_hsv(to_float(images))
    hsv[:, 1] = (hsv[:, 1] * factor + offset).clamp(0, 1)
    return to_uint8(hsv_to_rgb(hsv))


def contrast(images: torch.Tensor, c: float, rng: ImageStreams) -> torch.Tensor:
    x = to_float(images).to(torch.float64)
    means = x.mean(dim=(2, 3), keepdim=True)
    return to_uint8(((x - means) * c + means).to(torch.float32))


def pixelate(images: torch.Tensor, c: float, rng: ImageStreams) -> torch.Tensor:
    """Pillow BOX resize down to int(side * c) and back, in Pillow's own fixed-point arithmetic."""
    x = images.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    small = pil_box_resize(x, int(h * c), int(w * c))
    return pil_box_resize(small, h, w).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _jpeg_pillow(arrays: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    out = []
    for image in arrays:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out.append(np.asarray(decoded.convert("RGB")))
    return np.stack(out)


def jpeg_compression(images: torch.Tensor, quality: int, rng: ImageStreams) -> torch.Tensor:
    """Save as JPEG at `quality` and decode, like the official PIL round trip. torchvision's
    libjpeg-turbo codec gives the same pixels as Pillow's (same library, same quantisation
    tables and 4:2:0 subsampling; checked identical) and is faster; Pillow is the fallback."""
    cpu = images.cpu()
    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs (moving to torchcodec)
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import decode_jpeg, encode_jpeg

            encoded = encode_jpeg(list(cpu.permute(0, 3, 1, 2)), quality=int(quality))
            decoded = torch.stack(decode_jpeg(encoded)).permute(0, 2, 3, 1).contiguous()
    except (ImportError, RuntimeError):  # a torchvision without its image codecs
        decoded = torch.from_numpy(_jpeg_pillow(cpu.numpy(), int(quality)))
    return decoded.to(images.device)


def _affine_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """cv2.getAffineTransform for a batch: [N, 3, 2] point triples -> [N, 2, 3] maps src to dst."""
    ones = torch.ones(*src.shape[:2], 1, dtype=src.dtype, device=src.device)
    a = torch.cat([src, ones], dim=2)  # [N, 3, 3]
    return torch.linalg.solve(a, dst).transpose(1, 2)


def elastic_transform(images: torch.Tensor, p: tuple[float, float, float], rng: ImageStreams) -> torch.Tensor:
    """A random affine warp of three anchor points (cv2.warpAffine, reflect-101 border, source
    positions on OpenCV's 1/32-pixel grid), then a smooth random displacement field sampled with
    scipy.ndimage.map_coordinates(order=1, mode='reflect'). Sizes scale with the image side."""
    x = to_float(images)
    n, _, h, w = x.shape
    side = min(h, w)
    alpha, sigma, jitter = (f * side for f in p)
    center = torch.tensor([float(w // 2), float(h // 2)], dtype=torch.float64)  # (x, y), float32(shape)//2
    square = side // 3
    src = torch.stack([center + square, torch.stack([center[0] + square, center[1] - square]), center - square])
    jitters = rng.uniform(3, 2, low=-jitter, high=jitter).to(torch.float64).cpu()
    dst = (src.unsqueeze(0) + jitters).to(torch.float32).to(torch.float64)
    forward = _affine_from_points(src.unsqueeze(0).expand(n, 3, 2), dst)
    full = torch.cat([forward, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(n, 1, 3)], dim=1)
    inverse = torch.linalg.inv(full)[:, :2].to(x.device, torch.float32)  # warpAffine maps each output pixel back
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=x.device),
                            torch.arange(w, dtype=torch.float32, device=x.device), indexing="ij")
    pixels = torch.stack([xs, ys], dim=-1)  # [H, W, 2] = (x, y)
    homogeneous = torch.cat([pixels, torch.ones(h, w, 1, device=x.device)], dim=-1)
    source = torch.matmul(homogeneous.view(1, h * w, 3), inverse.transpose(1, 2)).view(n, h, w, 2)
    # OpenCV rounds source positions to 1/1024 pixel, then keeps 5 fractional bits (1/32 pixel)
    source = torch.floor(torch.round(source * 1024.0) * (1.0 / 32.0)) * (1.0 / 32.0)
    x = bilinear_sample(x, source, "reflect101")

    fields = rng.uniform(2, h, w, low=-1.0, high=1.0)  # dx, dy
    fields = gaussian_filter(fields, sigma, mode="symmetric", truncate=3.0) * alpha
    return to_uint8(bilinear_sample(x, pixels + fields.permute(0, 2, 3, 1), "symmetric"))

"""Weather corruptions: snow, frost, fog, and the spatter extra."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from gear_trt.corruptions._ops import (
    box_blur3,
    canny,
    chamfer_distance,
    clipped_zoom,
    correlate2d,
    cv2_linear_resize,
    equalize_hist,
    gaussian_filter,
    magick_motion_blur,
    rgb_to_gray,
    to_float,
    to_uint8,
    uint8_from_255,
)
from gear_trt.corruptions._rng import ImageStreams
from gear_trt.errors import DataError

ASSETS = Path(__file__).resolve().parent / "assets"
# The official generator picks one of its first five photographs (np.random.randint(5): frost6 is
# never used). Its frost2.png and frost3.png hold the same pixels, so one file serves both draws.
FROST_FILES = ("frost1.png", "frost2.png", "frost2.png", "frost4.jpg", "frost5.jpg")


def snow(images: torch.Tensor, p: tuple[float, ...], rng: ImageStreams) -> torch.Tensor:
    mean, std, zoom, threshold, radius, sigma, blend = p
    x = to_float(images)
    n, _, h, w = x.shape
    layer = rng.normal(1, h, w, mean=mean, std=std)
    layer = clipped_zoom(layer, float(zoom))
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = torch.floor(layer.clamp(0, 1) * 255.0)  # to an 8-bit grey image for ImageMagick
    angles = rng.uniform(low=-135.0, high=-45.0, dtype=torch.float64)
    layer = magick_motion_blur(layer, float(radius), float(sigma), angles) / 255.0
    x = blend * x + (1 - blend) * torch.maximum(x, rgb_to_gray(x) * 1.5 + 0.5)
    return to_uint8(x + layer + torch.flip(layer, dims=(-2, -1)))


@lru_cache(maxsize=4)
def frost_photos(scale: float) -> tuple[torch.Tensor, ...]:
    """The frost photographs as float CHW 0..255, resized by `scale` like cv2.resize(INTER_LINEAR)
    (checked: identical to OpenCV at the CIFAR scale 0.2, within 1 level at 0.3)."""
    from PIL import Image

    photos = []
    for name in FROST_FILES:
        path = ASSETS / name
        if not path.is_file():
            raise DataError(f"frost photograph {path} is missing", "reinstall gear-trt (the package ships it)")
        with Image.open(path) as im:
            rgb = torch.frombuffer(bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8)
            rgb = rgb.view(im.size[1], im.size[0], 3).permute(2, 0, 1).to(torch.float32)
        photos.append(torch.round(cv2_linear_resize(rgb.unsqueeze(0), scale)[0]))  # cv2 returns uint8
    return tuple(photos)


def frost(images: torch.Tensor, p: tuple[float, float], rng: ImageStreams, scale: float) -> torch.Tensor:
    image_weight, frost_weight = p
    n, h, w, _ = images.shape
    photos = frost_photos(float(scale))
    if any(ph.shape[1] <= h or ph.shape[2] <= w for ph in photos):
        raise DataError(f"images of {h}x{w} are larger than the frost photographs at scale {scale}",
                        "use a preset whose image size matches your images")
    picks = rng.draw(lambda g: torch.randint(len(photos), (), generator=g)).tolist()
    corners = rng.uniform(2, dtype=torch.float64).cpu()
    crops = []
    for k, pick in enumerate(picks):
        ph = photos[pick]
        top = int(corners[k, 0] * (ph.shape[1] - h))  # np.random.randint(0, H - h)
        left = int(corners[k, 1] * (ph.shape[2] - w))
        crops.append(ph[:, top: top + h, left: left + w])
    layer = torch.stack(crops).to(images.device)
    x = images.permute(0, 3, 1, 2).to(torch.float32)
    return uint8_from_255(image_weight * x + frost_weight * layer)


def plasma_fractal(rng: ImageStreams, mapsize: int, wibble_decay: float) -> torch.Tensor:
    """The official diamond-square height map, [N, mapsize, mapsize] in [0, 1], for all images."""
    n = len(rng)
    sizes = []
    step = mapsize
    while step >= 2:
        cells = mapsize // step
        sizes += [cells * cells] * 3
        step //= 2
    noise = rng.uniform(sum(sizes), low=-1.0, high=1.0)
    chunks = list(torch.split(noise, sizes, dim=1))
    m = torch.zeros(n, mapsize, mapsize, dtype=torch.float32, device=noise.device)
    step = mapsize
    wibble = 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        cells = chunks.pop(0).view(total.shape)
        return total / 4 + wibble * wibble * cells

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        squares = corners + torch.roll(corners, -1, dims=1)
        squares = squares + torch.roll(squares, -1, dims=2)
        m[:, half::step, half::step] = wibbled_mean(squares)
        down_right = m[:, half::step, half::step]
        up_left = m[:, 0::step, 0::step]
        total = down_right + torch.roll(down_right, 1, dims=1) + up_left + torch.roll(up_left, -1, dims=2)
        m[:, 0::step, half::step] = wibbled_mean(total)
        total = down_right + torch.roll(down_right, 1, dims=2) + up_left + torch.roll(up_left, -1, dims=1)
        m[:, half::step, 0::step] = wibbled_mean(total)
        step //= 2
        wibble /= wibble_decay
    low = m.amin(dim=(1, 2), keepdim=True)
    m = m - low
    return m / m.amax(dim=(1, 2), keepdim=True)


def fog(images: torch.Tensor, p: tuple[float, float], rng: ImageStreams) -> torch.Tensor:
    strength, decay = p
    x = to_float(images)
    n, _, h, w = x.shape
    mapsize = 1 << max(h, w, 2).bit_length() - 1
    if mapsize < max(h, w):
        mapsize *= 2
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    x = x + strength * plasma_fractal(rng, mapsize, float(decay))[:, None, :h, :w]
    return to_uint8(x * (max_val / (max_val + strength)))


_EMBOSS = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
_WATER = (175 / 255.0, 238 / 255.0, 238 / 255.0)
_MUD = (63 / 255.0, 42 / 255.0, 20 / 255.0)


def spatter(images: torch.Tensor, p: tuple[float, ...], rng: ImageStreams) -> torch.Tensor:
    """Water drops (severities 1-3: edges of a thresholded noise layer turned into an embossed
    sheen with OpenCV's Canny, distance transform and histogram equalisation) or mud (4-5)."""
    mean, std, sigma, threshold, strength, mud = p
    x = to_float(images)
    n, _, h, w = x.shape
    liquid = gaussian_filter(rng.normal(1, h, w, mean=mean, std=std, dtype=torch.float64), float(sigma))
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if not mud:
        liquid8 = torch.floor(liquid.clamp(0, 255 / 255.0) * 255.0)
        edges = canny(liquid8, 50, 150)
        dist = chamfer_distance(edges, 20.0)
        dist = torch.floor(box_blur3(dist))  # cv2.blur(...).astype(np.uint8)
        dist = equalize_hist(dist.to(torch.int64)).to(torch.float64)
        dist = correlate2d(dist, _EMBOSS, "reflect101").clamp(0, 255)  # filter2D to CV_8U
        dist = torch.round(box_blur3(dist))  # cv2.blur on uint8 rounds
        m = liquid8 * dist
        peak = m.amax(dim=(1, 2, 3), keepdim=True)
        m = torch.where(peak > 0, m / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(m))
        m = (m * strength).to(torch.float32)
        color = torch.tensor(_WATER, device=x.device).view(1, 3, 1, 1)
        return to_uint8(x + m * color)
    m = (liquid > threshold).to(torch.float32)
    m = gaussian_filter(m, float(strength))
    m = torch.where(m < 0.8, torch.zeros_like(m), m)
    color = torch.tensor(_MUD, device=x.device).view(1, 3, 1, 1)
    return to_uint8(x * (1 - m) + color * m)

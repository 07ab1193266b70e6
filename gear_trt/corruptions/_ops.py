"""Batched image operations in torch that reproduce the library calls of the official generator.

Images here are float NCHW. Each function names the call it stands for (scipy.ndimage,
skimage, OpenCV, ImageMagick, Pillow) and follows its border rule and rounding, so that the
corruptions match the official ones statistically and, where no randomness is involved,
to the pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- conversions


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1]."""
    return images.permute(0, 3, 1, 2).to(torch.float32) / 255.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float NCHW in [0, 1] -> uint8 NHWC the way the official script stores it:
    np.uint8(np.clip(x, 0, 1) * 255), which truncates rather than rounds."""
    return x.clamp(0.0, 1.0).mul_(255.0).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def uint8_from_255(x: torch.Tensor) -> torch.Tensor:
    """float NCHW in [0, 255] -> uint8 NHWC, truncating like np.uint8."""
    return x.clamp(0.0, 255.0).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# ---------------------------------------------------------------- borders


def border_index(index: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Map integer positions (any range) into [0, size) by a border rule.

    edge:       a a | a b c d | d d        (scipy 'nearest', OpenCV BORDER_REPLICATE)
    symmetric:  b a | a b c d | d c        (scipy 'reflect')
    reflect101: c b | a b c d | c b        (OpenCV BORDER_DEFAULT / BORDER_REFLECT_101)
    """
    if mode == "edge" or size == 1:
        return index.clamp(0, size - 1)
    if mode == "symmetric":
        period = 2 * size
        i = torch.remainder(index, period)
        return torch.where(i >= size, period - 1 - i, i)
    if mode == "reflect101":
        period = 2 * (size - 1)
        i = torch.remainder(index, period)
        return torch.where(i >= size, period - i, i)
    raise ValueError(f"unknown border mode {mode!r}")


def pad2d(x: torch.Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> torch.Tensor:
    """Pad the last two dims of x by a border rule (any pad width, even wider than the image)."""
    h, w = x.shape[-2:]
    fast = {"edge": "replicate", "reflect101": "reflect"}.get(mode)
    if fast and x.dim() == 4 and max(top, bottom) < h and max(left, right) < w and x.dtype.is_floating_point:
        return F.pad(x, (left, right, top, bottom), mode=fast)
    rows = border_index(torch.arange(-top, h + bottom, device=x.device), h, mode)
    cols = border_index(torch.arange(-left, w + right, device=x.device), w, mode)
    return x.index_select(-2, rows).index_select(-1, cols)


# ---------------------------------------------------------------- linear filters


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter1d's kernel: radius int(truncate * sigma + 0.5)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 * (x / sigma) ** 2)
    return phi / phi.sum()


@lru_cache(maxsize=256)
def _filter_matrix(size: int, kernel: tuple[float, ...], mode: str) -> torch.Tensor:
    """[size, size] matrix applying a 1-D correlation with border rule `mode` along one axis."""
    radius = (len(kernel) - 1) // 2
    taps = torch.arange(size).view(-1, 1) + torch.arange(-radius, radius + 1).view(1, -1)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    weights = torch.tensor(kernel, dtype=torch.float64).expand(size, -1)
    return matrix.scatter_add_(1, border_index(taps, size, mode), weights)


def correlate_separable(x: torch.Tensor, k_rows: torch.Tensor, k_cols: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every channel of NCHW x with k_rows along H and k_cols along W, as two small
    matrix products (borders folded into the matrices; fast for small images, any kernel width)."""
    h, w = x.shape[-2:]
    mh = _filter_matrix(h, tuple(k_rows.tolist()), mode).to(x.device, x.dtype)
    mw = _filter_matrix(w, tuple(k_cols.tolist()), mode).to(x.device, x.dtype)
    return mh @ x @ mw.T


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "edge", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian over H and W of NCHW x (channels kept apart). skimage's default
    border is scipy's 'nearest' (= edge); sigma 0 leaves the image as it is, as scipy does."""
    if sigma <= 1e-15:
        return x
    k = gaussian_kernel1d(sigma, truncate)
    return correlate_separable(x, k, k, mode)


def correlate2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """OpenCV filter2D (a correlation, anchor at the centre) of every channel of NCHW x, as a sum of
    shifted copies (faster than a grouped convolution for the small kernels used here)."""
    h, w = x.shape[-2:]
    kh, kw = kernel.shape
    padded = pad2d(x, kh // 2, (kh - 1) // 2, kw // 2, (kw - 1) // 2, mode)
    out = torch.zeros_like(x)
    for i, row in enumerate(kernel.tolist()):
        for j, weight in enumerate(row):
            if weight != 0.0:
                out.add_(padded[..., i: i + h, j: j + w], alpha=weight)
    return out


def box_blur3(x: torch.Tensor) -> torch.Tensor:
    """cv2.blur(x, (3, 3)): 3x3 mean with BORDER_REFLECT_101."""
    return correlate2d(x, torch.full((3, 3), 1.0 / 9.0, dtype=torch.float64), "reflect101")


# ---------------------------------------------------------------- resampling


DENSE_LIMIT = 1024  # images of up to this many pixels take linear filters as one matrix product


def dense_operator(apply: Callable[[torch.Tensor], torch.Tensor], h: int, w: int) -> torch.Tensor:
    """The [H*W, H*W] matrix T of a linear map of single-channel images, so that
    apply(x).flatten() == T @ x.flatten(); built by applying the map to the unit images."""
    basis = torch.eye(h * w, dtype=torch.float64).view(h * w, 1, h, w)
    return apply(basis).reshape(h * w, h * w).T.contiguous()


def apply_dense(x: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
    """Apply a dense_operator to every channel of NCHW x."""
    n, c, h, w = x.shape
    return (x.reshape(n * c, h * w) @ operator.T.to(x.device, x.dtype)).reshape(n, c, h, w)


@lru_cache(maxsize=256)
def clipped_zoom_matrix(size: int, factor: float) -> torch.Tensor:
    """[size, size] matrix A with A @ v = the official clipped_zoom of v along one axis: crop the
    centre ceil(size / factor), zoom it with scipy.ndimage.zoom(order=1) (corner-aligned
    linear interpolation to round(crop * factor) samples), cut the centre `size` back out."""
    crop = int(math.ceil(size / factor))
    top = (size - crop) // 2
    out = int(round(crop * factor))
    trim = (out - size) // 2
    step = (crop - 1) / (out - 1) if out > 1 else 0.0
    a = torch.zeros(size, size, dtype=torch.float64)
    for r in range(size):
        pos = (r + trim) * step
        i0 = min(int(math.floor(pos)), crop - 1)
        frac = pos - i0
        a[r, top + i0] += 1.0 - frac
        if frac > 0:
            a[r, top + i0 + 1] += frac
    return a


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The official clipped_zoom on the last two dims of x."""
    h, w = x.shape[-2:]
    ah = clipped_zoom_matrix(h, float(factor)).to(x.dtype).to(x.device)
    aw = clipped_zoom_matrix(w, float(factor)).to(x.dtype).to(x.device)
    return ah @ x @ aw.T


def cv2_linear_resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """cv2.resize(x, (0, 0), fx=scale, fy=scale) with INTER_LINEAR (half-pixel centres, no
    anti-aliasing, edge clamp); output side round(side * scale). x is NCHW float."""
    h, w = x.shape[-2:]

    def axis(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = int(round(size * scale))
        src = (torch.arange(out, dtype=torch.float64) + 0.5) / scale - 0.5
        i0 = torch.floor(src)
        frac = src - i0
        frac = torch.where(i0 < 0, torch.zeros_like(frac), frac)
        i0 = i0.clamp(min=0).long()
        at_end = i0 >= size - 1
        frac = torch.where(at_end, torch.zeros_like(frac), frac)
        i0 = i0.clamp(max=size - 1)
        return i0, (i0 + 1).clamp(max=size - 1), frac

    r0, r1, fr = axis(h)
    c0, c1, fc = axis(w)
    fr = fr.to(x.dtype).view(-1, 1)
    fc = fc.to(x.dtype).view(1, -1)
    top = x[..., r0, :] * (1 - fr) + x[..., r1, :] * fr
    return top[..., c0] * (1 - fc) + top[..., c1] * fc


_PIL_PRECISION_BITS = 32 - 8 - 2


@lru_cache(maxsize=128)
def pil_box_coefficients(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's Image.resize(..., Image.BOX) along one axis (precompute_coeffs and
    normalize_coeffs_8bpc in Pillow's Resample.c). A box tap weighs 1 or 0 before normalising, so
    every tap of an output has the same fixed-point weight: returns the 0/1 tap matrix
    [out, in] and that weight per output [out] (round(2**22 / taps))."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    taps = torch.zeros(out_size, in_size, dtype=torch.float32)
    weight = torch.zeros(out_size, dtype=torch.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        inside = [x for x in range(xmin, xmax) if -0.5 < (x - center + 0.5) * (1.0 / filterscale) <= 0.5]
        for x in inside:
            taps[xx, x] = 1.0
        if inside:
            weight[xx] = int(1.0 / len(inside) * (1 << _PIL_PRECISION_BITS) + 0.5)
    return taps, weight


def _pil_box_pass(v: torch.Tensor, taps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """One pass on the last axis: floor((sum * weight + 2**21) / 2**22). Sums of a few 8-bit values
    are exact in float32; with at most 4 taps per output the float32 product cannot cross an
    integer that the exact fixed-point result would not (weights 1, 1/2, 1/4 are exact and
    thirds stay 1/6 away from one); wider boxes use float64, where everything is exact."""
    sums = v @ taps.T.to(v.device)
    dtype = torch.float32 if int(taps.sum(dim=1).max()) <= 4 else torch.float64
    scale = (weight / (1 << _PIL_PRECISION_BITS)).to(v.device, dtype)
    return torch.floor(sums.to(dtype) * scale + 0.5).clamp_(0, 255).to(torch.float32)


def pil_box_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pillow's 8-bit BOX resize of uint8-valued NCHW x, bit for bit: horizontal pass, 8-bit
    result, vertical pass, 8-bit result. Returns float32 holding integers."""
    v = x.to(torch.float32)
    if v.shape[-1] != width:
        v = _pil_box_pass(v, *pil_box_coefficients(v.shape[-1], width))
    if v.shape[-2] != height:
        v = _pil_box_pass(v.transpose(-1, -2), *pil_box_coefficients(v.shape[-2], height)).transpose(-1, -2)
    return v


def bilinear_sample(x: torch.Tensor, positions: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample NCHW x at per-image pixel positions [N, H', W', 2] = (column, row) with bilinear
    weights, out-of-image neighbours taken by the border rule `mode` (the extended-image
    convention of scipy.ndimage.map_coordinates(order=1) and cv2.warpAffine).

    On a piecewise-linear extension, reflecting the position and clamping it is the same as
    reading the reflected image, which is what grid_sample's reflection padding does: about the
    edge pixels' centres with align_corners=True (reflect101), about their outer edges with
    align_corners=False (symmetric).
    """
    h, w = x.shape[-2:]
    size = torch.tensor([w, h], dtype=positions.dtype, device=positions.device)
    if mode == "reflect101":
        grid = positions * (2.0 / (size - 1).clamp(min=1)) - 1.0
        align, padding = True, "reflection"
    elif mode in ("symmetric", "edge"):
        grid = positions * (2.0 / size) + (1.0 / size - 1.0)
        align, padding = False, "reflection" if mode == "symmetric" else "border"
    else:
        raise ValueError(f"unknown border mode {mode!r}")
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding, align_corners=align)


# ---------------------------------------------------------------- ImageMagick motion blur


def motion_blur_taps(radius: float, sigma: float, angles_deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ImageMagick's MotionBlurImage kernel: width 2 * ceil(radius) + 1 one-sided Gaussian
    weights exp(-i^2 / 2 sigma^2) (normalised), tap i at offset round-half-down(i * (cos a, sin a)).
    Returns weights [K] and integer row / column offsets [N, K]."""
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(i * i) / (2.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma)
    weights = weights / weights.sum()
    rad = angles_deg.to(torch.float64) * (math.pi / 180.0)
    px = width * torch.sin(rad)
    py = width * torch.cos(rad)
    hyp = torch.hypot(px, py).unsqueeze(1)
    col_offset = torch.ceil(i * py.unsqueeze(1) / hyp - 0.5).long()
    row_offset = torch.ceil(i * px.unsqueeze(1) / hyp - 0.5).long()
    return weights, row_offset, col_offset


def magick_motion_blur(x: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """MagickMotionBlurImage on 8-bit NCHW x (float holding 0..255), one angle per image; pixels
    past the edge repeat the edge (ImageMagick's default virtual-pixel method). Returns the 8-bit
    result as ImageMagick Q16 writes it back to an 8-bit PNG (rounded to Q16, then truncated to 8
    bits), checked against ImageMagick 6.9.11 Q16 through Wand."""
    n, c, h, w = x.shape
    weights, dr, dc = motion_blur_taps(radius, sigma, angles_deg.cpu())
    top, bottom = max(0, -int(dr.min())), max(0, int(dr.max()))
    left, right = max(0, -int(dc.min())), max(0, int(dc.max()))
    padded = pad2d(x.to(torch.float32), top, bottom, left, right, "edge")
    pw = w + left + right
    flat = padded.reshape(n, c, -1)
    rows = torch.arange(top, top + h, device=x.device).view(h, 1)
    cols = torch.arange(left, left + w, device=x.device).view(1, w)
    base = (rows * pw + cols).view(1, 1, h * w)
    shifts = (dr * pw + dc).to(x.device)  # [N, K] flat offsets into the padded image
    acc = torch.zeros(n, c, h * w, dtype=torch.float32, device=x.device)
    index = torch.empty(n, 1, h * w, dtype=torch.int64, device=x.device)  # buffers reused across taps
    tap = torch.empty(n, c, h * w, dtype=torch.float32, device=x.device)
    for k, weight in enumerate(weights.tolist()):
        torch.add(base, shifts[:, k].view(n, 1, 1), out=index)
        torch.gather(flat, 2, index.expand(n, c, h * w), out=tap)
        acc.add_(tap, alpha=weight)
    # ImageMagick sums in double; float32 lands on the other side of a rounding edge for about
    # 1 value in 10,000 (then 1 level off), which no statistic can see.
    q16 = torch.floor(acc * 257.0 + 0.5)
    return torch.floor(q16 * (1.0 / 257.0) + 1e-4).reshape(n, c, h, w).to(x.dtype)


# ---------------------------------------------------------------- colour


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.rgb2hsv on NCHW x in [0, 1] (hue 0 where max == min; on ties the later of
    R, G, B sets the hue, as skimage assigns in that order)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = x.max(dim=1).values
    delta = v - x.min(dim=1).values
    gray = delta == 0
    safe_delta = torch.where(gray, torch.ones_like(delta), delta)
    s = torch.where(gray, torch.zeros_like(v), delta / torch.where(v == 0, torch.ones_like(v), v))
    h = torch.zeros_like(v)
    h = torch.where(r == v, (g - b) / safe_delta, h)
    h = torch.where(g == v, 2.0 + (b - r) / safe_delta, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe_delta, h)
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(gray, torch.zeros_like(h), h)
    return torch.stack([h, s, v], dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.hsv2rgb on NCHW x (same sector table and arithmetic)."""
    h, s, v = x[:, 0], x[:, 1], x[:, 2]
    hi = torch.floor(h * 6.0)
    f = h * 6.0 - hi
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    sector = torch.remainder(hi.to(torch.int64), 6)

    def pick(*by_sector: torch.Tensor) -> torch.Tensor:
        out = by_sector[5]
        for k in range(4, -1, -1):
            out = torch.where(sector == k, by_sector[k], out)
        return out

    return torch.stack([pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q)], dim=1)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """cv2.cvtColor(RGB2GRAY) on float NCHW x -> N1HW."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


# ---------------------------------------------------------------- OpenCV pieces for spatter

_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)


def canny(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """cv2.Canny(x, low, high) (aperture 3, L1 gradient) on uint8-valued N1HW x -> bool N1HW edges.
    Sobel with replicated borders, non-maximum suppression in four directions with OpenCV's
    integer tan(22.5) test and tie rule, hysteresis over 8-connected neighbours."""
    n, _, h, w = x.shape
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    xp = pad2d(x.to(torch.float64), 1, 1, 1, 1, "edge")
    dx = F.conv2d(xp, sobel.view(1, 1, 3, 3).to(x.device))
    dy = F.conv2d(xp, sobel.T.contiguous().view(1, 1, 3, 3).to(x.device))
    mag = dx.abs() + dy.abs()
    mp = F.pad(mag, (1, 1, 1, 1))  # magnitude is 0 outside the image

    def nb(dr: int, dc: int) -> torch.Tensor:
        return mp[..., 1 + dr: 1 + dr + h, 1 + dc: 1 + dc + w]

    ax = dx.abs()
    ay = dy.abs() * (1 << 15)
    tg22x = ax * _TG22
    tg67x = tg22x + ax * (1 << 16)
    horizontal = ay < tg22x
    vertical = (~horizontal) & (ay > tg67x)
    diagonal = ~(horizontal | vertical)
    same_sign = (dx * dy) >= 0  # OpenCV: s = (xs ^ ys) < 0 ? -1 : 1
    keep_h = (mag > nb(0, -1)) & (mag >= nb(0, 1))
    keep_v = (mag > nb(-1, 0)) & (mag >= nb(1, 0))
    keep_d_pos = (mag > nb(-1, -1)) & (mag > nb(1, 1))
    keep_d_neg = (mag > nb(-1, 1)) & (mag > nb(1, -1))
    keep_d = torch.where(same_sign, keep_d_pos, keep_d_neg)
    maximum = (mag > low) & ((horizontal & keep_h) | (vertical & keep_v) | (diagonal & keep_d))
    edges = maximum & (mag > high)
    candidates = maximum.to(torch.float32)
    while True:
        grown = (F.max_pool2d(edges.to(torch.float32), 3, 1, 1) * candidates) > 0
        if torch.equal(grown, edges):
            return edges
        edges = grown


def chamfer_distance(sources: torch.Tensor, cap: float) -> torch.Tensor:
    """cv2.distanceTransform(DIST_L2, 5) of the non-source pixels: the 5x5 chamfer distance
    (steps 1, 1.4, 2.1969) to the nearest True pixel of bool N1HW `sources`; values beyond `cap`
    (and pixels with no source) come back as `cap`."""
    big = cap * 4.0 + 10.0
    d = torch.where(sources, torch.zeros(sources.shape, dtype=torch.float32, device=sources.device),
                    torch.full(sources.shape, big, dtype=torch.float32, device=sources.device))
    h, w = d.shape[-2:]
    steps = []
    for dr in range(-2, 3):
        for dc in range(-2, 3):
            if (dr, dc) == (0, 0):
                continue
            a, b = sorted((abs(dr), abs(dc)))
            if (a, b) == (0, 1):
                steps.append((dr, dc, 1.0))
            elif (a, b) == (1, 1):
                steps.append((dr, dc, 1.4))
            elif (a, b) == (1, 2):
                steps.append((dr, dc, 2.1969))
    for _ in range(int(math.ceil(cap)) + 1):
        p = F.pad(d, (2, 2, 2, 2), value=big)
        new = d
        for dr, dc, cost in steps:
            new = torch.minimum(new, p[..., 2 + dr: 2 + dr + h, 2 + dc: 2 + dc + w] + cost)
        if torch.equal(new, d):
            break
        d = new
    return d.clamp(max=cap)


def equalize_hist(x: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist on uint8-valued N1HW x (int64): lut[v] = round(255 * (cdf(v) - cdf(min)) /
    (total - count(min))), an image of one value stays as it is."""
    n = x.shape[0]
    flat = x.reshape(n, -1).to(torch.int64)
    total = flat.shape[1]
    hist = torch.zeros(n, 256, dtype=torch.int64, device=x.device).scatter_add_(1, flat, torch.ones_like(flat))
    cdf = hist.cumsum(1)
    vmin = flat.min(dim=1).values
    count_min = hist.gather(1, vmin.unsqueeze(1))
    denom = (total - count_min).clamp(min=1).to(torch.float32)
    lut = torch.round((cdf - count_min).to(torch.float32) * (255.0 / denom)).clamp(0, 255).to(torch.int64)
    lut = torch.where(torch.arange(256, device=x.device).unsqueeze(0) <= vmin.unsqueeze(1), torch.zeros_like(lut), lut)
    out = lut.gather(1, flat)
    constant = (count_min.squeeze(1) == total).unsqueeze(1)
    out = torch.where(constant, flat, out)
    return out.reshape(x.shape)

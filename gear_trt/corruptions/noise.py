"""Noise corruptions: gaussian, shot (Poisson), impulse (salt and pepper), speckle."""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from gear_trt.corruptions._ops import to_float, to_uint8
from gear_trt.corruptions._rng import ImageStreams


def gaussian_noise(images: torch.Tensor, c: float, rng: ImageStreams) -> torch.Tensor:
    x = to_float(images)
    return to_uint8(x + rng.normal(*x.shape[1:], std=c))


_GUIDE = 4096  # u-buckets per rate: the answer is pinned by the guide alone for ~95% of draws


@lru_cache(maxsize=16)
def _poisson_tables(rate_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For the 256 rates v / 255 * rate_scale (v = 0..255): the Poisson CDFs [256, K] and a guide
    table [256, _GUIDE + 1] holding, for each j, the smallest count whose CDF reaches j / _GUIDE."""
    top = int(rate_scale + 12 * math.sqrt(rate_scale) + 20)  # tail mass beyond this < 1e-15
    k = torch.arange(top + 1, dtype=torch.float64)
    rates = torch.arange(256, dtype=torch.float64).unsqueeze(1) / 255.0 * rate_scale
    log_pmf = k * torch.log(rates.clamp(min=1e-300)) - rates - torch.lgamma(k + 1)
    pmf = torch.where(rates > 0, torch.exp(log_pmf), (k == 0).to(torch.float64).expand(256, -1))
    cdf = pmf.cumsum(dim=1).clamp(max=1.0)
    cdf[:, -1] = 1.0
    buckets = torch.arange(_GUIDE + 1, dtype=torch.float64) / _GUIDE
    guide = torch.searchsorted(cdf, buckets.expand(256, -1).contiguous()).clamp(max=top).to(torch.int32)
    return cdf, guide


def shot_noise(images: torch.Tensor, c: float, rng: ImageStreams) -> torch.Tensor:
    """Poisson(x * c) / c by inverting the exact Poisson CDF of each of the 256 possible rates
    (the official np.random.poisson draws from the same distribution). The guide table brackets
    the answer between two counts, usually adjacent; a vectorised bisection finishes."""
    cdf, guide = _poisson_tables(float(c))
    flat_cdf, flat_guide = cdf.flatten().to(images.device), guide.flatten().to(images.device)
    width = cdf.shape[1]
    u = rng.uniform(*images.shape[1:]).flatten()
    level = images.flatten().to(torch.int32)  # int32 indices: every index here is < 2**31
    start = level * (_GUIDE + 1) + (u * _GUIDE).to(torch.int32)  # u < 1, so the bucket is < _GUIDE
    low = flat_guide.index_select(0, start)  # CDF(low - 1) < bucket / _GUIDE <= u
    high = flat_guide.index_select(0, start + 1)  # CDF(high) >= (bucket + 1) / _GUIDE > u
    active = torch.nonzero(low < high).flatten()
    while len(active):
        lo, hi = low.index_select(0, active), high.index_select(0, active)
        mid = (lo + hi) // 2
        enough = flat_cdf.index_select(0, level.index_select(0, active) * width + mid) >= u.index_select(0, active)
        lo, hi = torch.where(enough, lo, mid + 1), torch.where(enough, mid, hi)
        low.index_copy_(0, active, lo)
        high.index_copy_(0, active, hi)
        active = active[lo < hi]
    counts = low.view(images.shape)
    return to_uint8((counts.to(torch.float32) / c).permute(0, 3, 1, 2))


def impulse_noise(images: torch.Tensor, c: float, rng: ImageStreams) -> torch.Tensor:
    """skimage.util.random_noise(mode='s&p', amount=c): each value flips with probability c,
    to 1 or 0 with equal odds. (skimage <= 0.14, which made the published CIFAR-10-C, drew a
    fixed count of positions instead; the expected number of flipped values is the same.)"""
    x = to_float(images)
    u = rng.uniform(*x.shape[1:])
    x = torch.where(u < c / 2, torch.ones_like(x), x)
    x = torch.where((u >= c / 2) & (u < c), torch.zeros_like(x), x)
    return to_uint8(x)


def speckle_noise(images: torch.Tensor, c: float, rng: ImageStreams) -> torch.Tensor:
    x = to_float(images)
    return to_uint8(x + x * rng.normal(*x.shape[1:], std=c))

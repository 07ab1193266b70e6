"""Corruption constants, as data: one tuple of 5 severities per corruption and preset.

"cifar" is transcribed from the official CIFAR-10-C generator (hendrycks/robustness,
ImageNet-C/create_c/make_cifar_c.py) and "tinyimagenet" from make_tinyimagenet_c.py
(Hendrycks & Dietterich 2019, Apache-2.0). Entries keep the official tuple order; the
comment above each says what the fields mean. Sizes that the official code writes as
IMSIZE * f (elastic) are stored as the fraction f and scaled by the image side at run time.
"""

from __future__ import annotations

from typing import Any

# The 15 corruptions of the benchmark, in the paper's order, and the 4 held-out extras.
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRAS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# The official zoom_blur factors are np.arange(1, 1.06 / 1.11 / 1.16 / 1.21 / 1.26, 0.01). Float
# rounding makes the first two lists one factor longer than they read (1.00..1.06 is 7 factors);
# arange's step is (1 + 0.01) - 1, which reproduces its values to the last bit.
_ZOOM_STEPS = (7, 12, 16, 21, 26)
_ZOOM_STEP = (1.0 + 0.01) - 1.0
ZOOM_FACTORS: tuple[tuple[float, ...], ...] = tuple(
    tuple(1.0 + i * _ZOOM_STEP for i in range(steps)) for steps in _ZOOM_STEPS
)

CIFAR: dict[str, Any] = {
    "image_size": 32,
    # noise standard deviation (fraction of full scale)
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    # photons per unit intensity (Poisson rate = x * c)
    "shot_noise": (500, 250, 100, 75, 50),
    # fraction of pixel channels flipped to 0 or 1
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    # multiplicative noise standard deviation
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    # gaussian sigma (pixels)
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    # (gaussian sigma, max pixel shift, shuffle passes)
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    # (disk radius, anti-alias gaussian sigma)
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    # (ImageMagick motion-blur radius, sigma); angle uniform in [-45, 45) degrees
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": ZOOM_FACTORS,
    # (snow mean, snow std, zoom, threshold, blur radius, blur sigma, image blend)
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    # (image weight, frost weight); frost photos scaled by frost_scale, then randomly cropped
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    "frost_scale": 0.2,
    # (fog strength, plasma fractal wibble decay)
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    # value (V of HSV) added
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    # contrast factor around the per-channel mean
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    # (displacement scale, displacement smoothing sigma, affine jitter) as fractions of the side
    "elastic_transform": (
        (0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03),
    ),
    # downscale factor before box upscaling
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    # JPEG quality
    "jpeg_compression": (80, 65, 58, 50, 40),
    # (liquid mean, liquid std, liquid sigma, threshold, strength or mud sigma, mud?)
    "spatter": (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
    # (saturation factor, saturation offset)
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
}

TINYIMAGENET: dict[str, Any] = {
    "image_size": 64,
    "gaussian_noise": (0.04, 0.08, 0.12, 0.15, 0.18),
    "shot_noise": (250, 100, 50, 30, 15),
    "impulse_noise": (0.01, 0.02, 0.05, 0.08, 0.14),
    "speckle_noise": (0.15, 0.2, 0.25, 0.3, 0.35),
    "gaussian_blur": (0.5, 0.75, 1, 1.25, 1.5),
    "glass_blur": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
    "defocus_blur": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
    "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
    "zoom_blur": ZOOM_FACTORS,
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.8),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6),
    ),
    "frost": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
    "frost_scale": 0.3,
    "fog": ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "elastic_transform": (
        (0.0, 0.0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06), (0.1, 0.03, 0.03), (0.16, 0.03, 0.02),
    ),
    "pixelate": (0.9, 0.8, 0.7, 0.6, 0.5),
    "jpeg_compression": (65, 58, 50, 40, 25),
    "spatter": (
        (0.62, 0.1, 0.7, 0.7, 0.6, 0),
        (0.65, 0.1, 0.8, 0.7, 0.6, 0),
        (0.65, 0.3, 1, 0.69, 0.6, 0),
        (0.65, 0.1, 0.7, 0.68, 0.6, 1),
        (0.65, 0.1, 0.5, 0.67, 0.6, 1),
    ),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
}

PRESETS: dict[str, dict[str, Any]] = {"cifar": CIFAR, "tinyimagenet": TINYIMAGENET}


def severity_params(preset: str, name: str, severity: int) -> Any:
    """The official constants of `name` at `severity` (1..5) in `preset`."""
    return PRESETS[preset][name][severity - 1]

"""A picture of one image under every corruption and severity (rows: corruptions; columns: clean,
severity 1..5), for the docs and for eyeballing.

    python -m gear_trt.corruptions.grid docs/img/corruption_grid.png [--source builtin] [--index 7]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import numpy as np

from gear_trt.corruptions.core import corrupt
from gear_trt.corruptions.params import CORRUPTIONS, EXTRAS, SEVERITIES

_LABEL_WIDTH = 150
_HEADER = 44
_GAP = 4
_SECTION = 26


def _font(size: int):  # type: ignore[no-untyped-def]
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


def grid_image(image: np.ndarray, *, preset: str = "cifar", seed: int = 0, scale: int = 3,
               corruptions: Sequence[str] = CORRUPTIONS, extras: Sequence[str] = EXTRAS):  # type: ignore[no-untyped-def]
    """A PIL image of `image` (uint8 [H, W, 3]) under each corruption (rows) at each severity."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    cell_w, cell_h = w * scale, h * scale
    sections = [("", list(corruptions)), ("extras (held out, not in the mean)", list(extras))]
    rows = sum(len(names) for _, names in sections if names)
    gaps = sum(1 for title, names in sections if names and title)
    width = _LABEL_WIDTH + (1 + len(SEVERITIES)) * (cell_w + _GAP)
    height = _HEADER + rows * (cell_h + _GAP) + gaps * _SECTION
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    for col, title in enumerate(["clean"] + [f"severity {s}" for s in SEVERITIES]):
        draw.text((_LABEL_WIDTH + col * (cell_w + _GAP) + 4, _HEADER - 20), title, fill="black", font=font)
    draw.text((4, 4), f"preset {preset}, seed {seed}", fill="gray", font=font)

    def paste(pixels: np.ndarray, col: int, y: int) -> None:
        tile = Image.fromarray(pixels).resize((cell_w, cell_h), Image.Resampling.NEAREST)
        canvas.paste(tile, (_LABEL_WIDTH + col * (cell_w + _GAP), y))

    y = _HEADER
    for title, names in sections:
        if not names:
            continue
        if title:
            draw.text((4, y + 6), title, fill="gray", font=font)
            y += _SECTION
        for name in names:
            draw.text((4, y + cell_h // 2 - 8), name, fill="black", font=font)
            paste(image, 0, y)
            for s in SEVERITIES:
                paste(corrupt(image, name, s, seed=seed, preset=preset), s, y)
            y += cell_h + _GAP
    return canvas


def save_grid(image: np.ndarray, path: str | os.PathLike, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Write grid_image(image, **kwargs) as a PNG, atomically."""
    from gear_trt.io import atomic_write

    picture = grid_image(image, **kwargs)
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG", optimize=True))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a PNG of one test image under every corruption and severity.")
    parser.add_argument("output")
    parser.add_argument("--source", default="builtin", help="a gear_trt.data source (default: builtin)")
    parser.add_argument("--index", type=int, default=0, help="which test image")
    parser.add_argument("--preset", default="cifar")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=3)
    args = parser.parse_args(argv)
    from gear_trt.data import load_source

    data = load_source(args.source, "test")
    image = data.images[args.index].cpu().numpy()
    save_grid(image, args.output, preset=args.preset, seed=args.seed, scale=args.scale)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

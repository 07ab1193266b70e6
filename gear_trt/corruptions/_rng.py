"""Per-image random streams.

Image i of a call draws all its randomness from one CPU generator seeded by
(seed, corruption, severity, index of the image), so a corrupted image does not depend on
the batch it came in, on the batch size, or on the device: draws are made on the CPU and
moved to the images' device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch


def image_seed(seed: int, name: str, severity: int, index: int) -> int:
    """A 63-bit seed for one (seed, corruption, severity, image index)."""
    key = f"gear-trt-corruption/{seed}/{name}/{severity}/{index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


class ImageStreams:
    """One generator per image; successive `draw` calls continue the same streams."""

    def __init__(self, seed: int, name: str, severity: int, indices: Sequence[int], device: torch.device) -> None:
        self.device = device
        self.generators = [torch.Generator().manual_seed(image_seed(seed, name, severity, int(i))) for i in indices]

    def __len__(self) -> int:
        return len(self.generators)

    def draw(self, fn: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
        """Stack fn(generator) over the images and move the result to the images' device."""
        if not self.generators:
            raise ValueError("no images to draw for")
        return torch.stack([fn(g) for g in self.generators]).to(self.device)

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[N, *shape] uniform in [low, high)."""
        draws = self.draw(lambda g: torch.rand(shape, generator=g, dtype=dtype))
        return draws if (low, high) == (0.0, 1.0) else draws * (high - low) + low

    def normal(self, *shape: int, mean: float = 0.0, std: float = 1.0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[N, *shape] normal(mean, std)."""
        return self.draw(lambda g: torch.normal(mean, std, shape, generator=g, dtype=dtype))

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """[N, *shape] int64 in [low, high)."""
        return self.draw(lambda g: torch.randint(low, high, shape, generator=g))

"""ImageSet (a whole split in memory as one uint8 NHWC tensor), normalisation and resizing.

The resize rule is the deployment rule (gear_trt/artifacts/meta.py): bilinear, half-pixel centres,
no antialiasing, computed in float. At pack time the result is rounded back to uint8.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from gear_trt.artifacts.meta import CIFAR_MEAN, CIFAR_STD

Indices = Union[torch.Tensor, Sequence[int]]


@dataclasses.dataclass(eq=False)
class ImageSet:
    """One split of a data set: `images` uint8 [N, H, W, 3] RGB, `labels` int64 [N].

    `classes[k]` names label k; `name` is the source ("builtin", "cifar10", a folder's name), `split`
    "train" or "test"; `skipped` lists the files that could not be read (see sources.py).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str = ""
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [N, H, W, 3], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 [{self.images.shape[0]}], got {self.labels.dtype} {tuple(self.labels.shape)}")
        self.classes = tuple(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        h, w = self.images.shape[1:3]
        return f"ImageSet(name={self.name!r}, images={len(self)}, size={h}x{w}, classes={len(self.classes)})"

    @property
    def image_size(self) -> int:
        """The side of the (square) images; their height if they are not square."""
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, indices: Indices) -> "ImageSet":
        """The images at `indices` (a sequence or tensor of ints, or a boolean mask), in that order."""
        idx = torch.as_tensor(indices, device=self.images.device)
        if idx.dtype != torch.bool:
            idx = idx.to(torch.int64)
        return dataclasses.replace(self, images=self.images[idx], labels=self.labels[idx.to(self.labels.device)])

    def per_class(self, count: int, seed: int = 0) -> "ImageSet":
        """A class-balanced subset: up to `count` images of each class, chosen with `seed`, in index order."""
        gen = torch.Generator().manual_seed(seed)
        labels = self.labels.cpu()
        picks = []
        for k in range(self.num_classes):
            members = torch.nonzero(labels == k).flatten()
            picks.append(members[torch.randperm(len(members), generator=gen)[:count]])
        return self.subset(torch.cat(picks).sort().values)


def resize_images(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize uint8 NHWC images with the deployment rule; returns uint8 NHWC (rounded, clamped)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[1:3]) == hw:
        return images
    x = images.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _nchw_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> contiguous float32 NCHW, converting and transposing in one copy."""
    n, h, w, c = images.shape
    return torch.empty((n, c, h, w), dtype=torch.float32, device=images.device).copy_(images.permute(0, 3, 1, 2))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> contiguous float32 NCHW in [0, 1], on the images' device."""
    return _nchw_float(images).mul_(1.0 / 255.0)


@functools.lru_cache(maxsize=16)
def _affine_terms(mean: tuple[float, ...], std: tuple[float, ...], scale: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mul = torch.tensor([scale / s for s in std], dtype=torch.float32).view(1, -1, 1, 1).to(device)
    add = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32).view(1, -1, 1, 1).to(device)
    return mul, add


def _affine(x: torch.Tensor, mean: Sequence[float], std: Sequence[float], scale: float, inplace: bool) -> torch.Tensor:
    """x * scale / std[c] - mean[c] / std[c]: the two-step formula up to float rounding, but one pass
    fewer (and in-place mul_/add_, which CPU torch runs far faster than a broadcast addcmul)."""
    mul, add = _affine_terms(tuple(map(float, mean)), tuple(map(float, std)), float(scale), x.device)
    return (x.mul_(mul) if inplace else x.mul(mul)).add_(add)


def normalize_float(x: torch.Tensor, mean: Sequence[float] = CIFAR_MEAN, std: Sequence[float] = CIFAR_STD) -> torch.Tensor:
    """float NCHW in [0, 1] -> (x - mean[c]) / std[c], a new tensor (x is left as it is)."""
    return _affine(x, mean, std, 1.0, inplace=False)


def normalize(images: torch.Tensor, mean: Sequence[float] = CIFAR_MEAN, std: Sequence[float] = CIFAR_STD) -> torch.Tensor:
    """uint8 NHWC (or one HWC image) -> float32 NCHW (or CHW) normalised, on the images' device.

    The deployment preprocessing: (pixel / 255 - mean[c]) / std[c] (up to float rounding).
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 NHWC images, got {images.dtype}; use normalize_float for [0, 1] NCHW floats")
    if images.dim() == 3:
        return normalize(images.unsqueeze(0), mean, std)[0]
    if images.dim() != 4 or images.shape[-1] != 3:
        raise ValueError(f"normalize expects [N, H, W, 3] images, got {tuple(images.shape)}")
    return _affine(_nchw_float(images), mean, std, 1.0 / 255.0, inplace=True)

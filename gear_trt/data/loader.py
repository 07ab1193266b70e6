"""BatchLoader: batches of an in-memory ImageSet, augmented on the training device.

Train batches: shuffled, then a random crop with zero padding and a horizontal flip, per image
and vectorised (one gather for the whole batch, no Python loop per image), done on uint8 pixels
on `device`; then the optional `augment` hook on float [0, 1] NCHW; then normalisation.

Determinism: all randomness comes from CPU torch.Generators seeded from (seed, epoch) for the
order and (seed, epoch, batch) for each batch, so an epoch is a pure function of (seed, epoch),
identical on every device and independent of what ran before; resuming at epoch e after
`set_epoch(e)` reproduces the original run exactly. The epoch changes only through set_epoch:
call it at the start of every epoch or every epoch repeats the same order and crops.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from gear_trt.artifacts.meta import CIFAR_MEAN, CIFAR_STD
from gear_trt.data.imageset import ImageSet, normalize, normalize_float, to_float
from gear_trt.errors import ConfigError, DataError

Batch = Union[torch.Tensor, tuple[torch.Tensor, ...]]
# augment(x, generator): x float32 NCHW in [0, 1] on the device; the generator is a seeded CPU
# torch.Generator (draw per-image parameters with it, then move them to x.device). Returns one
# batch, or a tuple of batches (e.g. clean + augmented views for AugMix's JSD loss).
Augment = Callable[[torch.Tensor, torch.Generator], Batch]

PRELOAD_LIMIT_BYTES = 1 << 30  # move a whole split to the device once if it is at most this big


def seeded_generator(seed: int, *stream: object) -> torch.Generator:
    """A CPU generator whose state is a pure function of (seed, *stream)."""
    digest = hashlib.blake2b(repr((seed, *stream)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True) -> torch.Tensor:
    """Per image: a random HxW window of the zero-padded image, mirrored with probability 1/2.

    uint8 (or any dtype) NHWC in, same out; offsets and flips are drawn on the CPU generator.
    """
    n, h, w, c = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    if padding == 0 and not flip:
        return images
    device = images.device
    offsets, flips = offsets.to(device), flips.to(device)
    padded = F.pad(images, (0, 0, padding, padding, padding, padding)) if padding else images
    hp, wp = h + 2 * padding, w + 2 * padding
    rows = offsets[0, :, None] + torch.arange(h, device=device)  # [N, H]
    cols = torch.arange(w, device=device).expand(n, w)
    cols = torch.where(flips[:, None], w - 1 - cols, cols) + offsets[1, :, None]  # [N, W]
    # One index_select over pixels (rows of C values): several times faster than 3-tensor indexing on CPU.
    pixel = (torch.arange(n, device=device)[:, None, None] * hp + rows[:, :, None]) * wp + cols[:, None, :]
    return padded.reshape(n * hp * wp, c).index_select(0, pixel.reshape(-1)).view(n, h, w, c)


class BatchLoader:
    """Iterates (x, y): x float32 NCHW normalised (or a tuple of them, see Augment), y int64, on `device`."""

    def __init__(
        self,
        ds: ImageSet,
        batch_size: int,
        *,
        train: bool,
        device: Union[str, torch.device] = "cpu",
        seed: int = 0,
        augment: Optional[Augment] = None,
        drop_last: Optional[bool] = None,
        crop_padding: int = 4,
        flip: bool = True,
        mean: Sequence[float] = CIFAR_MEAN,
        std: Sequence[float] = CIFAR_STD,
        preload: Optional[bool] = None,
    ) -> None:
        """drop_last defaults to `train`. preload (default: if the split is at most 1 GiB) copies the
        whole uint8 split to `device` once instead of copying each batch."""
        if batch_size < 1:
            raise ConfigError(f"batch size must be positive, got {batch_size}", "pass a batch size such as 128")
        if augment is not None and not train:
            raise ConfigError("an augment hook was given to a test loader", "augment only training loaders (train=True)")
        if len(ds) == 0:
            raise DataError(f"{ds.name} {ds.split} has no images", "check the data source")
        self.ds = ds
        self.batch_size = batch_size
        self.train = train
        self.device = torch.device(device)
        self.seed = seed
        self.augment = augment
        self.drop_last = train if drop_last is None else drop_last
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train
        self.mean, self.std = tuple(mean), tuple(std)
        self.epoch = 0
        if len(self) == 0:
            raise DataError(
                f"{ds.name} {ds.split} has {len(ds)} images, fewer than one batch of {batch_size} with drop_last",
                "lower the batch size or pass drop_last=False",
            )
        if preload is None:
            preload = ds.images.numel() <= PRELOAD_LIMIT_BYTES
        self._images = ds.images.to(self.device) if preload else ds.images
        self._labels = ds.labels.to(self._images.device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.ds)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> torch.Tensor:
        """This epoch's image order (CPU int64)."""
        n = len(self.ds)
        if not self.train:
            return torch.arange(n)
        return torch.randperm(n, generator=seeded_generator(self.seed, self.epoch, "order"))

    def __iter__(self) -> Iterator[tuple[Batch, torch.Tensor]]:
        order = self.order().to(self._images.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            images = self._images.index_select(0, idx).to(self.device, non_blocking=True)
            labels = self._labels.index_select(0, idx).to(self.device, non_blocking=True)
            yield self._transform(images, b), labels

    def _transform(self, images: torch.Tensor, batch_index: int) -> Batch:
        if not self.train:
            return normalize(images, self.mean, self.std)
        generator = seeded_generator(self.seed, self.epoch, batch_index)
        images = random_crop_flip(images, generator, self.crop_padding, self.flip)
        if self.augment is None:
            return normalize(images, self.mean, self.std)
        out = self.augment(to_float(images), generator)
        if isinstance(out, tuple):
            return tuple(normalize_float(v, self.mean, self.std) for v in out)
        return normalize_float(out, self.mean, self.std)

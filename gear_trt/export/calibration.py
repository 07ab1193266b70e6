"""Calibration-set manifests: which training images calibrate INT8, recorded so the set can be rebuilt.

A manifest is small JSON (calibration/README.md): the data source and split, the class names, the
seed, and the chosen image indices (class-balanced, sorted), plus a hash of those images' pixels so
a changed source is caught instead of silently calibrating on other images. The images go through
the model's eval transform (gear_trt.artifacts.preprocess's rule: resize if needed, normalise; no
augmentation) when a reader is made for a particular model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np

from gear_trt import __version__
from gear_trt.artifacts.meta import DeployMeta
from gear_trt.errors import ArtifactError, ConfigError, DataError
from gear_trt.io import atomic_write_json

if TYPE_CHECKING:
    from gear_trt.data.imageset import ImageSet
    from gear_trt.export.precision import CalibrationReader

PathLike = Union[str, "os.PathLike[str]"]
FORMAT = "gear-trt-calib/1"
DEFAULT_SIZE = 512
DEFAULT_SEED = 0
TRANSFORM = "eval"  # the model's deployment preprocessing, no augmentation


@dataclasses.dataclass(frozen=True)
class CalibrationManifest:
    source: str  # a load_source() string: "builtin", "cifar10:<root>", a folder or a .zip
    split: str
    classes: tuple[str, ...]
    seed: int
    indices: tuple[int, ...]  # into load_source(source, split), sorted
    per_class: tuple[int, ...]
    images_sha256: str  # of the chosen images' uint8 pixels and labels
    image_size: int
    transform: str = TRANSFORM
    created_by: str = f"gear-trt {__version__}"
    format: str = FORMAT

    @property
    def size(self) -> int:
        return len(self.indices)

    @property
    def digest(self) -> str:
        """12 hex digits naming this exact set (seed, source, indices and pixels)."""
        return hashlib.sha256(json.dumps([self.source, self.split, self.seed, list(self.indices), self.images_sha256]).encode()).hexdigest()[:12]

    def summary(self) -> dict[str, Any]:
        """What a quantized model records about its calibration set (lineage)."""
        return {"source": self.source, "split": self.split, "size": self.size, "seed": self.seed, "digest": self.digest,
                "images_sha256": self.images_sha256, "transform": self.transform}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(classes=list(self.classes), indices=list(self.indices), per_class=list(self.per_class), size=self.size, digest=self.digest)
        return d

    def save(self, path: PathLike) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "calibration manifest") -> "CalibrationManifest":
        if d.get("format") != FORMAT:
            raise ArtifactError(f"{where} has format {d.get('format')!r}, expected {FORMAT!r}", "make a new manifest with `gear-trt export --calibration NEW.json`")
        try:
            m = cls(source=str(d["source"]), split=str(d["split"]), classes=tuple(d["classes"]), seed=int(d["seed"]),
                    indices=tuple(int(i) for i in d["indices"]), per_class=tuple(int(c) for c in d["per_class"]),
                    images_sha256=str(d["images_sha256"]), image_size=int(d["image_size"]),
                    transform=str(d.get("transform", TRANSFORM)), created_by=str(d.get("created_by", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{where} is incomplete or malformed ({exc})", "make a new manifest") from None
        if "digest" in d and d["digest"] != m.digest:
            raise ArtifactError(f"{where} was edited: its digest does not match its contents", "make a new manifest instead of editing one")
        return m


def load_manifest(path: PathLike) -> CalibrationManifest:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"calibration manifest {path} does not exist", "make one with `gear-trt export --calibration PATH` (it is created when missing)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"calibration manifest {path} is unreadable ({exc})", "make a new manifest") from None
    return CalibrationManifest.from_dict(raw, str(path))


def _images_hash(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def balanced_indices(labels: Union[Sequence[int], np.ndarray], num_classes: int, size: int, seed: int) -> tuple[list[int], list[int]]:
    """`size` indices spread as evenly as the classes allow; (sorted indices, count per class).

    Each class gets size // K, the remainder goes to classes chosen by `seed`; a class with too few
    images gives all it has and the shortfall moves to classes that have more.
    """
    label_array = np.asarray(labels, dtype=np.int64)
    if size < 1:
        raise ConfigError(f"calibration size must be >= 1, got {size}")
    if size > len(label_array):
        raise DataError(f"asked for {size} calibration images, the split has {len(label_array)}", f"use --calib-size {len(label_array)} or fewer")
    rng = np.random.default_rng(seed)
    members = [rng.permutation(np.flatnonzero(label_array == k)) for k in range(num_classes)]
    available = np.array([len(m) for m in members])
    quota = np.zeros(num_classes, dtype=np.int64)
    remaining = size
    order = rng.permutation(num_classes)  # who gets the odd images, reproducibly
    while remaining > 0:
        open_classes = [k for k in order if quota[k] < available[k]]
        share, extra = divmod(remaining, len(open_classes))
        for rank, k in enumerate(open_classes):
            take = min(share + (1 if rank < extra else 0), available[k] - quota[k])
            quota[k] += take
            remaining -= take
    picks = np.concatenate([members[k][: quota[k]] for k in range(num_classes)])
    return sorted(int(i) for i in picks), [int(q) for q in quota]


def make_manifest(ds: "ImageSet", *, source: str, split: str = "train", size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> CalibrationManifest:
    """Choose a class-balanced calibration set from `ds` (loaded from `source`, `split`) and record it."""
    labels = ds.labels.cpu().numpy()
    indices, per_class = balanced_indices(labels, len(ds.classes), size, seed)
    idx = np.asarray(indices)
    return CalibrationManifest(
        source=str(source), split=split, classes=tuple(ds.classes), seed=seed, indices=tuple(indices), per_class=tuple(per_class),
        images_sha256=_images_hash(ds.images.cpu().numpy()[idx], labels[idx]), image_size=int(ds.images.shape[1]),
    )


def select(manifest: CalibrationManifest, ds: "ImageSet", where: str = "calibration manifest") -> "ImageSet":
    """The manifest's images from `ds`, after checking they are the very images it recorded."""
    if tuple(ds.classes) != manifest.classes:
        raise DataError(f"{where}: the data's classes {list(ds.classes)[:5]}... differ from the manifest's {list(manifest.classes)[:5]}...",
                        "calibrate with the data the model was trained on, or make a new manifest")
    if manifest.indices and max(manifest.indices) >= len(ds):
        raise DataError(f"{where}: index {max(manifest.indices)} is past the end of {manifest.source}:{manifest.split} ({len(ds)} images)", "make a new manifest for this data")
    subset = ds.subset(list(manifest.indices))
    digest = _images_hash(subset.images.cpu().numpy(), subset.labels.cpu().numpy())
    if digest != manifest.images_sha256:
        raise DataError(f"{where}: the images at its indices are not the ones it recorded ({manifest.source}:{manifest.split} changed)",
                        "make a new manifest for this data (delete the file and re-run)")
    return subset


def calibration_reader(manifest: CalibrationManifest, ds: "ImageSet", meta: DeployMeta, *, batch_size: int = 64) -> "CalibrationReader":
    """A CalibrationReader over the manifest's images, preprocessed with `meta`'s eval transform."""
    from gear_trt.artifacts.preprocess import preprocess_images
    from gear_trt.export.precision import CalibrationReader

    subset = select(manifest, ds)
    data = preprocess_images(subset.images, meta.preprocess).numpy()
    return CalibrationReader(data, meta.input_name, batch_size)


def resolve_manifest(path: Optional[PathLike], *, source: str, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED,
                     split: str = "train") -> tuple[CalibrationManifest, "ImageSet"]:
    """Load the manifest at `path` (and its data), or make one from `source` and save it at `path`.

    With path None the manifest is made and not saved. Returns (manifest, the whole split it indexes).
    """
    from gear_trt.data import load_source

    if path is not None and Path(path).exists():
        manifest = load_manifest(path)
        ds = load_source(manifest.source, manifest.split)
        select(manifest, ds, str(path))  # fail early on a changed source
        return manifest, ds
    ds = load_source(source, split)
    manifest = make_manifest(ds, source=source, split=split, size=size, seed=seed)
    if path is not None:
        manifest.save(path)
    return manifest, ds

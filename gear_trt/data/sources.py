"""Data sources -> ImageSet: `load_source(src, split)`.

`src` is one of
    "builtin"             a class-balanced CIFAR-10 (JPEG) subset shipped in the package:
                          500 train / 100 test images per class, 32x32; works offline
    "cifar10:<root>"      CIFAR-10 in torchvision's format (<root>/cifar-10-batches-py/)
    "cifar100:<root>"     CIFAR-100 likewise (<root>/cifar-100-python/, the 100 fine labels)
    <folder>              an image-folder tree: train/<class>/<image>, test/<class>/<image>
                          (val/, valid/ or validation/ also serve as the test split)
    <file.zip>            the same tree inside a zip (optionally under one top folder),
                          read in place without extracting

Image-folder rules. Classes are the sorted folder names of train/ (test/ must hold the same
ones, else DataError); label k is classes[k]. Files with an image extension (IMAGE_EXTENSIONS)
anywhere under a class folder are images; other files, hidden files and __MACOSX/ are ignored.
Grayscale, palette and RGBA images become RGB. All images must share one size unless
`image_size` is given: then each is resized to image_size x image_size by the deployment rule
(bilinear, half-pixel centres, no antialiasing; see gear_trt/artifacts/meta.py) and rounded to
uint8. Files are read in sorted order, so an ImageSet is the same on every machine.

Unreadable or corrupt images. With on_error="skip" (the default) they are left out: one
BrokenImagesWarning names up to 10 of them with the total count, and ImageSet.skipped lists them
all; if that leaves a class or the whole split without images, it is a DataError. With
on_error="fail" the first load raises a DataError naming them instead. Decoding happens in
threads that never raise, so a bad file never crashes deep inside a worker.

Packed cache. A decoded image-folder or zip split is saved once as uint8 pixels (cache.py) and
reloaded on the next call without decoding a JPEG. CIFAR batches are uint8 arrays already and
are read directly.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from gear_trt.data import cache as packed_cache
from gear_trt.data.cifar import LAYOUT as CIFAR_LAYOUT
from gear_trt.data.cifar import load_cifar
from gear_trt.data.decode import IMAGE_EXTENSIONS, DirReader, Reader, ZipReader, pack
from gear_trt.data.imageset import ImageSet
from gear_trt.errors import ConfigError, DataError, GearWarning

BUILTIN_ZIP = Path(__file__).resolve().parent / "builtin" / "cifar10-subset.zip"
SPLITS = ("train", "test", "val")
SPLIT_FOLDERS = {
    "train": ("train",),
    "test": ("test", "val", "valid", "validation"),
    "val": ("val", "valid", "validation", "test"),
}
LAYOUT_FIX = "lay the images out as train/<class>/<image> and test/<class>/<image> (or val/)"
SOURCE_FIX = "give 'builtin', 'cifar10:<root>', 'cifar100:<root>', an image-folder directory or a .zip of one"
MAX_NAMED = 10


class BrokenImagesWarning(GearWarning):
    """Some images of a source could not be read and were skipped."""


def load_source(
    src: Union[str, os.PathLike],
    split: str = "train",
    *,
    image_size: Optional[int] = None,
    max_per_class: Optional[int] = None,
    on_error: str = "skip",
    cache: bool = True,
    cache_dir: Optional[Union[str, os.PathLike]] = None,
    workers: Optional[int] = None,
    progress: bool = True,
) -> ImageSet:
    """Load one split of a data source (see the module docstring) as an in-memory ImageSet.

    max_per_class keeps the first N images of each class (sorted file order; file order for CIFAR).
    cache=False neither reads nor writes the packed cache; cache_dir overrides its location.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'", f"use one of {', '.join(SPLITS)}")
    if on_error not in ("skip", "fail"):
        raise ConfigError(f"on_error must be 'skip' or 'fail', not {on_error!r}", "use on_error='skip' or 'fail'")
    for option, value in (("image_size", image_size), ("max_per_class", max_per_class)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{option} must be a positive integer, got {value!r}", f"pass {option}=32 or leave it unset")

    kind, path, name = parse_source(src)
    if kind in CIFAR_LAYOUT:
        return load_cifar(path, kind, "train" if split == "train" else "test", image_size, max_per_class)

    tree = ImageTree.open(kind, path)
    split_folder = tree.split_folder(split)
    classes = tree.classes_for(split_folder)
    names: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        files = tree.files(split_folder, cls)[:max_per_class]
        if not files:
            raise DataError(f"class '{cls}' has no images in {tree.describe(split_folder + '/' + cls)}", "add images or remove the empty class folder")
        names += files
        labels += [label] * len(files)

    ds: Optional[ImageSet] = None
    key_path = None
    reasons: dict[str, str] = {}
    if cache:
        key = packed_cache.cache_key([kind, split, image_size, classes, tree.fingerprint(names)])
        key_path = packed_cache.cache_path(packed_cache.cache_root(cache_dir), name, split, image_size, key)
        ds = packed_cache.load(key_path)
    if ds is None:
        ds, reasons = _pack(tree, split_folder, names, labels, classes, name, split, image_size, workers, progress)
        if key_path is not None:
            packed_cache.save(key_path, ds)
    _report_skipped(ds, tree.describe(split_folder), len(names), on_error, reasons)
    return ds


def parse_source(src: Union[str, os.PathLike]) -> tuple[str, Path, str]:
    """(kind, path, name) with kind one of "zip", "dir", "cifar10", "cifar100"."""
    text = os.fspath(src)
    if text == "builtin":
        if not BUILTIN_ZIP.is_file():
            raise DataError(f"the builtin data set {BUILTIN_ZIP} is missing from this installation", "reinstall gear-trt (it ships as package data)")
        return "zip", BUILTIN_ZIP, "builtin"
    for variant in CIFAR_LAYOUT:
        if text == variant or text.startswith(variant + ":"):
            root = text[len(variant) + 1:]
            if not root:
                raise DataError(f"'{text}' needs the dataset's root folder", f"write {variant}:<root>, e.g. {variant}:~/data")
            path = Path(root).expanduser()
            if not path.is_dir():
                raise DataError(f"{variant} root {path} is not a folder", f"point {variant}:<root> at the folder holding {CIFAR_LAYOUT[variant][0]}/")
            return variant, path, variant
    path = Path(text).expanduser()
    if path.is_dir():
        return "dir", path, path.resolve().name
    if path.is_file():
        if zipfile.is_zipfile(path):
            return "zip", path, path.stem
        raise DataError(f"data source {path} is a file but not a zip archive", SOURCE_FIX)
    raise DataError(f"data source '{text}' not found", SOURCE_FIX)


class ImageTree:
    """The files of an image-folder tree, in a directory or a zip: {split folder: {class: [names]}}."""

    def __init__(self, kind: str, path: Path, tree: dict[str, dict[str, list[str]]], stamps: dict[str, Any]) -> None:
        self.kind = kind
        self.path = path
        self.tree = tree
        self.stamps = stamps  # name -> what identifies its content (zip: CRC + size; dir: size + mtime)

    @classmethod
    def open(cls, kind: str, path: Path) -> "ImageTree":
        return cls._from_zip(path) if kind == "zip" else cls._from_dir(path)

    @classmethod
    def _from_dir(cls, path: Path) -> "ImageTree":
        tops = [p for p in path.iterdir() if p.is_dir()]
        entries = [f"{p.name}/" for p in tops] + [f"{p.name}/{q.name}/" for p in tops if len(tops) == 1 for q in p.iterdir() if q.is_dir()]
        root = _tree_root(entries, path)
        base = path / root
        tree: dict[str, dict[str, list[str]]] = {}
        for split_dir in sorted(p for p in base.iterdir() if p.is_dir() and not _hidden(p.name)):
            classes: dict[str, list[str]] = {}
            for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not _hidden(p.name)):
                files = []
                for folder, subdirs, filenames in os.walk(class_dir):
                    subdirs[:] = [d for d in subdirs if not _hidden(d)]
                    rel = Path(folder).relative_to(base).as_posix()
                    files += [f"{rel}/{f}" for f in filenames if _is_image(f)]
                classes[class_dir.name] = sorted(files)
            tree[split_dir.name] = classes
        return cls("dir", base, tree, {})

    def _fingerprint_dir(self, names: list[str]) -> list[Any]:
        out: list[Any] = []
        for name in names:
            try:
                st = (self.path / name).stat()
            except OSError as exc:  # a dangling or looping symlink: decoding reports it as unreadable
                out.append([name, "unreadable", exc.errno])
                continue
            out.append([name, st.st_size, st.st_mtime_ns])
        return out

    @classmethod
    def _from_zip(cls, path: Path) -> "ImageTree":
        try:
            with zipfile.ZipFile(path) as zf:
                infos = [i for i in zf.infolist() if not i.filename.startswith("__MACOSX/")]
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"cannot read the zip {path} ({exc})", "re-create the zip archive") from exc
        root = _tree_root([i.filename for i in infos], path)
        tree: dict[str, dict[str, list[str]]] = {}
        stamps: dict[str, Any] = {}
        for info in infos:
            name = info.filename
            if not name.startswith(root):
                continue
            rel = name[len(root):]
            if rel.startswith(".") or "/." in rel:  # hidden files and folders
                continue
            parts = rel.rstrip("/").split("/")
            if len(parts) < 2:
                continue
            files = tree.setdefault(parts[0], {}).setdefault(parts[1], [])  # an empty class folder is still a class
            if len(parts) >= 3 and not name.endswith("/") and _is_image(parts[-1]):
                files.append(name)
                stamps[name] = (info.CRC, info.file_size)
        for classes in tree.values():
            for files in classes.values():
                files.sort()
        return cls("zip", path, tree, stamps)

    def fingerprint(self, names: list[str]) -> list[Any]:
        if self.kind == "zip":
            return [[n, *self.stamps[n]] for n in names]
        return self._fingerprint_dir(names)

    def reader(self) -> Reader:
        return ZipReader(self.path) if self.kind == "zip" else DirReader(self.path)

    def describe(self, inside: str = "") -> str:
        return f"{self.path}:{inside}" if self.kind == "zip" else str(self.path / inside)

    def split_folder(self, split: str) -> str:
        for folder in SPLIT_FOLDERS[split]:
            if folder in self.tree:
                return folder
        found = ", ".join(f"{f}/" for f in sorted(self.tree)) or "nothing"
        raise DataError(f"{self.describe()} has no {SPLIT_FOLDERS[split][0]}/ folder (found {found})", LAYOUT_FIX)

    def classes_for(self, split_folder: str) -> tuple[str, ...]:
        """The sorted class folders of train/ (or of this split if there is no train/)."""
        classes = tuple(sorted(self.tree.get("train", self.tree[split_folder])))
        if not classes:
            raise DataError(f"{self.describe('train' if 'train' in self.tree else split_folder)} has no class folders", LAYOUT_FIX)
        here = set(self.tree[split_folder])
        if here != set(classes):
            missing, extra = sorted(set(classes) - here), sorted(here - set(classes))
            raise DataError(
                f"{split_folder}/ and train/ hold different classes (missing in {split_folder}/: {missing or 'none'}; "
                f"not in train/: {extra or 'none'})",
                f"give {split_folder}/ the same class folders as train/",
            )
        return classes

    def files(self, split_folder: str, cls: str) -> list[str]:
        return self.tree[split_folder][cls]


def _tree_root(entries: list[str], path: Path) -> str:
    """'' if the split folders sit at the top, '<top>/' if everything sits under one folder."""
    tops = {e.split("/", 1)[0] for e in entries if "/" in e}
    if any(t in folders for t in tops for folders in SPLIT_FOLDERS.values()):
        return ""
    visible = {t for t in tops if not _hidden(t)}
    if len(visible) == 1:
        top = visible.pop()
        inner = {e[len(top) + 1:].split("/", 1)[0] for e in entries if e.startswith(top + "/")}
        if any(t in folders for t in inner for folders in SPLIT_FOLDERS.values()):
            return top + "/"
    raise DataError(f"{path} holds no train/ or test/ folder (top level: {', '.join(sorted(tops)[:5]) or 'empty'})", LAYOUT_FIX)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _is_image(filename: str) -> bool:
    return not _hidden(filename) and os.path.splitext(filename)[1].lower() in IMAGE_EXTENSIONS


def _pack(tree: ImageTree, split_folder: str, names: list[str], labels: list[int], classes: tuple[str, ...], name: str,
          split: str, image_size: Optional[int], workers: Optional[int], progress: bool) -> tuple[ImageSet, dict[str, str]]:
    """Decode the files; returns the ImageSet and {skipped file: why}."""
    reader = tree.reader()
    try:
        packed = pack(reader, names, image_size, workers=workers, desc=f"packing {name}/{split}", progress=progress)
    finally:
        reader.close()
    skipped = tuple(n for n, _ in packed.broken)
    if len(skipped) == len(names):
        raise DataError(
            f"none of the {len(names)} images in {tree.describe(split_folder)} could be read (e.g. {names[0]}: {packed.broken[0][1]})",
            "check that the files are images (JPEG, PNG, ...) and not damaged",
        )
    label_array = torch.from_numpy(np.asarray(labels, dtype=np.int64)[packed.keep])
    return ImageSet(torch.from_numpy(packed.images), label_array, classes, name, split, skipped), dict(packed.broken)


def _report_skipped(ds: ImageSet, where: str, total: int, on_error: str, reasons: dict[str, str]) -> None:
    """Warn about (or, with on_error="fail", refuse) skipped files; a class left empty is always an error."""
    if not ds.skipped:
        return
    named = ", ".join(f"{n} ({reasons[n]})" if n in reasons else n for n in ds.skipped[:MAX_NAMED])
    more = f" and {len(ds.skipped) - MAX_NAMED} more" if len(ds.skipped) > MAX_NAMED else ""
    what = f"{len(ds.skipped)} of {total} images in {where} are unreadable: {named}{more}"
    if on_error == "fail":
        raise DataError(what, "fix or delete those files, or pass on_error='skip' to leave them out")
    empty = [c for c, count in zip(ds.classes, ds.class_counts()) if count == 0]
    if empty:
        raise DataError(f"class {empty[0]!r} has no readable images; {what}", "fix or replace those files")
    warnings.warn(f"skipped {what}", BrokenImagesWarning, stacklevel=3)

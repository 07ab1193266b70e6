"""Make gear_trt/data/builtin/cifar10-subset.zip, the offline default data set ("builtin").

A class-balanced subset of ../shared/data/cifar10-jpeg.zip (relative to the repo root):
per class, the files whose names hash first under sha256 (a fixed, spread-out choice that
does not depend on how the source numbered its files), copied byte-for-byte in the same
train/<class>/NNNN.jpg, test/<class>/NNNN.jpg layout. Entries are sorted and carry a fixed
timestamp, so running the script twice gives an identical zip.

    python tools/make_builtin_data.py [--train-per-class 500] [--test-per-class 100]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gear_trt.io import atomic_write, sha256_file  # noqa: E402

SOURCE = REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"
TARGET = REPO / "gear_trt" / "data" / "builtin" / "cifar10-subset.zip"
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def choose(names: list[str], count: int) -> list[str]:
    """The `count` names that come first when ordered by sha256 of the name."""
    ranked = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    if len(ranked) < count:
        raise SystemExit(f"only {len(ranked)} files under {Path(names[0]).parent}, need {count}")
    return sorted(ranked[:count])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--output", type=Path, default=TARGET)
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    args = parser.parse_args()

    per_split = {"train": args.train_per_class, "test": args.test_per_class}
    with zipfile.ZipFile(args.source) as src:
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for name in src.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[0] in per_split and parts[2].lower().endswith(".jpg"):
                groups[(parts[0], parts[1])].append(name)
        chosen = [n for key in sorted(groups) for n in choose(groups[key], per_split[key[0]])]

        def write(path: Path) -> None:
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as out:
                for name in chosen:
                    info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
                    info.external_attr = 0o644 << 16
                    out.writestr(info, src.read(name), compress_type=zipfile.ZIP_STORED)

        atomic_write(args.output, write)

    classes = sorted({c for _, c in groups})
    size_kib = args.output.stat().st_size / 1024
    print(f"wrote {args.output} ({len(chosen)} images, {len(classes)} classes, {size_kib:.0f} KiB)")
    print(f"sha256 {sha256_file(args.output)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Record the official corruption generator's statistics for the fidelity test (never run in CI).

Runs the official generator, hendrycks/robustness ImageNet-C/create_c/make_cifar_c.py (and
make_tinyimagenet_c.py), in a separate Python environment on a fixed set of CIFAR-10 test
images, measures how far each corruption and severity moves the images (mean PSNR, mean absolute
pixel difference) and how long it takes, and writes those numbers (no code) to
tests/data/corruption_reference.json. It also prints ours beside them.

The official scripts generate whole data sets when run; this tool executes only their block of
corruption functions (between the "Distortion Helpers" and "End Distortions" markers), with
small shims for current libraries (np.float_, np.fromstring, skimage's `multichannel`).

Set-up, outside the project:
    git clone https://github.com/hendrycks/robustness /tmp/robustness
    apt-get install libmagickwand-dev
    python -m venv /tmp/hvenv && /tmp/hvenv/bin/pip install numpy scipy scikit-image opencv-python-headless wand pillow
    python tools/compare_official_corruptions.py --checkout /tmp/robustness --python /tmp/hvenv/bin/python
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gear_trt.corruptions import ALL_CORRUPTIONS, corrupt
from gear_trt.corruptions.metrics import distortion_stats
from gear_trt.io import atomic_write_json

OUTPUT = REPO / "tests" / "data" / "corruption_reference.json"
ZIPS = [REPO / "gear_trt" / "data" / "builtin" / "cifar10-subset.zip", REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"]
SCRIPTS = {"cifar": "make_cifar_c.py", "tinyimagenet": "make_tinyimagenet_c.py"}
SIZES = {"cifar": 32, "tinyimagenet": 64}

# Runs inside the official generator's environment; argv: checkout, script, images.npy, out.npz
DRIVER = r'''
import os, sys, time
import numpy as np
checkout, script, images_path, out_path = sys.argv[1:5]
np.float_ = np.float64
_frombuffer = np.frombuffer
np.fromstring = lambda data, dtype=float, *a, **k: _frombuffer(data, dtype)
import skimage.filters
_gaussian = skimage.filters.gaussian
def gaussian(image, sigma=1, *args, multichannel=None, **kwargs):
    if multichannel:
        kwargs["channel_axis"] = -1
    return _gaussian(image, sigma, *args, **kwargs)
skimage.filters.gaussian = gaussian
from PIL import Image
folder = os.path.join(checkout, "ImageNet-C", "create_c")
source = open(os.path.join(folder, script)).read()
start = source.index("# /////////////// Distortion Helpers ///////////////")
end = source.index("# /////////////// End Distortions ///////////////")
namespace = {"np": np, "Image": Image, "os": os, "__name__": "official"}
os.chdir(folder)  # frost reads ./frost*.png
exec(compile(source[start:end], script, "exec"), namespace)
images = np.load(images_path)
names = sys.argv[5].split(",")
out, seconds = {}, {}
for name in names:
    fn = namespace[name]
    for severity in range(1, 6):
        np.random.seed(1000 * names.index(name) + severity)
        t = time.perf_counter()
        out[f"{name}/{severity}"] = np.stack([np.uint8(np.asarray(fn(Image.fromarray(im), severity))) for im in images])
        seconds[f"{name}/{severity}"] = time.perf_counter() - t
np.savez(out_path, seconds=np.array([seconds[k] for k in out]), keys=np.array(list(out)), **{k.replace("/", "__"): v for k, v in out.items()})
'''


# ImageMagick's motion blur alone, at fixed angles (argv: images.npy, settings.npy, out.npy)
MAGICK_DRIVER = r'''
import ctypes, sys
from io import BytesIO
import numpy as np
from PIL import Image
from wand.image import Image as WandImage
from wand.api import library
library.MagickMotionBlurImage.argtypes = (ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_double)
images, settings = np.load(sys.argv[1]), np.load(sys.argv[2])
out = []
for radius, sigma, angle in settings:
    for im in images:
        buffer = BytesIO()
        Image.fromarray(im).save(buffer, format="PNG")
        with WandImage(blob=buffer.getvalue()) as wand:
            library.MagickMotionBlurImage(wand.wand, radius, sigma, angle)
            out.append(np.asarray(Image.open(BytesIO(wand.make_blob("png"))).convert("RGB")))
np.save(sys.argv[3], np.stack(out).reshape(len(settings), len(images), *images.shape[1:]))
'''
MOTION_SETTINGS = [(6, 1, -30.5), (9, 2.5, 17.3), (14, 12, -100.0), (10, 2, 44.9)]


def record_motion_blur(python: str, images: np.ndarray, output: Path) -> None:
    """ImageMagick's own motion blur of a few images, for the pixel-exact kernel test."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = np.array(MOTION_SETTINGS, dtype=np.float64)
        np.save(Path(tmp) / "images.npy", images)
        np.save(Path(tmp) / "settings.npy", settings)
        subprocess.run([python, "-c", MAGICK_DRIVER, str(Path(tmp) / "images.npy"), str(Path(tmp) / "settings.npy"),
                        str(Path(tmp) / "out.npy")], check=True)
        blurred = np.load(Path(tmp) / "out.npy")
    from gear_trt.io import atomic_write

    def write(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez_compressed(f, images=images, settings=settings, blurred=blurred)

    atomic_write(output, write)
    print(f"wrote {output}")


def reference_names(zip_path: Path, per_class: int) -> list[str]:
    """Per class of the test split, the `per_class` file names that come first under sha256 of the
    name: the same rule that picks the built-in subset, so these images are in it."""
    with zipfile.ZipFile(zip_path) as z:
        groups: dict[str, list[str]] = defaultdict(list)
        for name in z.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == "test" and parts[2].endswith(".jpg"):
                groups[parts[1]].append(name)
    chosen = []
    for cls in sorted(groups):
        ranked = sorted(groups[cls], key=lambda n: hashlib.sha256(n.encode()).hexdigest())
        chosen += sorted(ranked[:per_class])
    return chosen


def load_images(names: list[str]) -> np.ndarray:
    from PIL import Image

    for path in ZIPS:
        if path.is_file():
            with zipfile.ZipFile(path) as z:
                if set(names) <= set(z.namelist()):
                    return np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in names])
    raise SystemExit(f"none of {', '.join(map(str, ZIPS))} holds the reference images")


def upscale(images: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if images.shape[1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


def versions(python: str) -> dict[str, str]:
    code = ("import numpy, scipy, skimage, cv2, PIL, wand.version as w, sys; print(sys.version.split()[0], numpy.__version__,"
            " scipy.__version__, skimage.__version__, cv2.__version__, PIL.__version__, w.MAGICK_VERSION.split()[1])")
    parts = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return dict(zip(["python", "numpy", "scipy", "scikit-image", "opencv", "pillow", "imagemagick"], parts))


def markdown_table(record: dict, preset: str) -> str:
    """The fidelity table for docs/corruptions.md: official vs ours, per corruption and severity."""
    stats = record["presets"][preset]["stats"]
    lines = ["| corruption | severity | PSNR official | PSNR ours | MAD official | MAD ours | identical values |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in ALL_CORRUPTIONS:
        for s in range(1, 6):
            e = stats[name][str(s)]
            label = name if s == 1 else ""
            lines.append(f"| {label} | {s} | {e['psnr']:.2f} | {e['ours_psnr']:.2f} | {e['mad']:.2f} | {e['ours_mad']:.2f} "
                         f"| {100 * e['identical_values']:.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, help="a clone of hendrycks/robustness")
    parser.add_argument("--python", help="python of an environment with the official generator's dependencies")
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--presets", default="cifar,tinyimagenet")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--markdown", type=Path, help="only print the docs tables of an existing --output file")
    args = parser.parse_args()
    if args.markdown:
        record = json.loads(args.output.read_text())
        text = "".join(f"### {preset}\n\n{markdown_table(record, preset)}\n" for preset in record["presets"])
        args.markdown.write_text(text)
        print(f"wrote {args.markdown}")
        return 0

    if not args.checkout or not args.python:
        parser.error("--checkout and --python are required to record")
    import torch

    torch.set_num_threads(1)
    commit = subprocess.run(["git", "-C", str(args.checkout), "rev-parse", "HEAD"], check=False, capture_output=True, text=True).stdout.strip()
    names = reference_names(next(p for p in ZIPS if p.is_file()), args.per_class)
    clean32 = load_images(names)
    record: dict = {
        "format": "gear-trt-corruption-reference/1",
        "about": "Statistics of the official common-corruption generator on fixed CIFAR-10 test images: "
                 "mean PSNR (dB) and mean absolute pixel difference (0..255) against the clean image, per "
                 "corruption and severity, and the official generator's seconds per image. Numbers only.",
        "generator": {"repository": "hendrycks/robustness", "commit": commit, "scripts": SCRIPTS},
        "environment": versions(args.python),
        "images": {"source": "CIFAR-10 test split (JPEG), zip members", "names": names,
                   "sha256_pixels": hashlib.sha256(clean32.tobytes()).hexdigest(),
                   "tinyimagenet_resize": "PIL bilinear 32 -> 64"},
        "presets": {},
    }
    for preset in args.presets.split(","):
        clean = upscale(clean32, SIZES[preset])
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "images.npy", clean)
            started = time.time()
            subprocess.run([args.python, "-c", DRIVER, str(args.checkout), SCRIPTS[preset], str(Path(tmp) / "images.npy"),
                            str(Path(tmp) / "out.npz"), ",".join(ALL_CORRUPTIONS)], check=True)
            print(f"official {preset}: {time.time() - started:.0f} s", flush=True)
            data = np.load(Path(tmp) / "out.npz")
            official = {k: data[k.replace("/", "__")] for k in data["keys"]}
            seconds = dict(zip(data["keys"], data["seconds"]))
        stats: dict = {}
        timing: dict = {}
        print(f"\n{preset}: PSNR official / ours (dB)   MAD official / ours   identical values")
        for name in ALL_CORRUPTIONS:
            stats[name] = {}
            timing[name] = {}
            for s in range(1, 6):
                theirs = official[f"{name}/{s}"]
                ours = corrupt(clean, name, s, preset=preset)
                psnr, mad = distortion_stats(clean, theirs)
                ours_psnr, ours_mad = distortion_stats(clean, ours)
                same = float((ours == theirs).mean())  # meaningful for the corruptions without randomness
                stats[name][str(s)] = {"psnr": round(psnr, 3), "mad": round(mad, 3),
                                       "ours_psnr": round(ours_psnr, 3), "ours_mad": round(ours_mad, 3),
                                       "identical_values": round(same, 5)}
                timing[name][str(s)] = round(float(seconds[f"{name}/{s}"]) / len(clean), 6)
                flag = "" if abs(psnr - ours_psnr) <= 1 and abs(mad - ours_mad) <= 0.15 * mad else "   <-- outside bounds"
                print(f"  {name:18s} {s}  {psnr:6.2f} / {ours_psnr:6.2f}   {mad:6.2f} / {ours_mad:6.2f}"
                      f"   identical {100 * same:6.2f}%{flag}")
        record["presets"][preset] = {"image_size": SIZES[preset], "stats": stats, "official_seconds_per_image": timing}
    atomic_write_json(args.output, record)
    print(f"wrote {args.output}")
    record_motion_blur(args.python, clean32[::50], args.output.parent / "magick_motion_blur.npz")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

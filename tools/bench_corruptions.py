"""Benchmark the corruption suite on the CPU: generation speed per corruption, the full
15 corruptions x 5 severities sweep (generation + inference of a small model), and the speed-up
over the official generator (hendrycks/robustness make_cifar_c.py).

    python tools/bench_corruptions.py                       # 10,000 CIFAR-10 test images from ../shared
    python tools/bench_corruptions.py --images 2000         # part of the set (the sweep time is scaled up)
    python tools/bench_corruptions.py --official-python /tmp/hvenv/bin/python --checkout /tmp/robustness

Without --official-python the official generator's seconds per image come from
tests/data/corruption_reference.json (recorded by tools/compare_official_corruptions.py, on this
kind of machine but at another time); with it, the official generator runs here, now, on
--official-images images per corruption and severity.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

SHARED_ZIP = REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"
REFERENCE = REPO / "tests" / "data" / "corruption_reference.json"


def load_test_set(source: str, count: int):  # type: ignore[no-untyped-def]
    from gear_trt.data import load_source

    data = load_source(source, "test")
    if count and count < len(data):
        index = np.linspace(0, len(data) - 1, count).round().astype(np.int64)
        return data.images[index], data.labels[index], len(data)
    return data.images, data.labels, len(data)


def small_model(family: str, multiplier: float):  # type: ignore[no-untyped-def]
    import torch

    from gear_trt.data import normalize
    from gear_trt.models import backbone_spec, build_model, count_params, scaled_spec

    spec = backbone_spec(family) if multiplier <= 0 else scaled_spec(family, multiplier)
    model = build_model(spec).eval()

    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(normalize(images))

    return predict, f"{family} ({'backbone' if multiplier <= 0 else f'x{multiplier}'}, {count_params(spec):,} params)"


def time_generation(images, names, preset: str, threads: int, repeats: int = 2) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds per image, averaged over the 5 severities, for each corruption (best of `repeats`,
    as other processes only ever slow a run down), on `threads` torch threads."""
    import torch

    from gear_trt.corruptions import corrupt

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = {}
    try:
        for name in names:
            for s in range(1, 6):  # warm caches (dense operators, frost photographs)
                corrupt(images[:4], name, s, preset=preset)
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                for s in range(1, 6):
                    corrupt(images, name, s, preset=preset)
                best = min(best, time.perf_counter() - start)
            out[name] = best / (5 * len(images))
    finally:
        torch.set_num_threads(before)
    return out


def official_now(python: str, checkout: str, images: np.ndarray, names) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from compare_official_corruptions import DRIVER

    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "images.npy", images)
        subprocess.run([python, "-c", DRIVER, checkout, "make_cifar_c.py", str(Path(tmp) / "images.npy"),
                        str(Path(tmp) / "out.npz"), ",".join(names)], check=True)
        data = np.load(Path(tmp) / "out.npz")
        per_key = dict(zip(data["keys"], data["seconds"]))
    return {n: sum(float(per_key[f"{n}/{s}"]) for s in range(1, 6)) / (5 * len(images)) for n in names}


def official_recorded(names) -> dict[str, float]:  # type: ignore[no-untyped-def]
    timing = json.loads(REFERENCE.read_text())["presets"]["cifar"]["official_seconds_per_image"]
    return {n: sum(timing[n][str(s)] for s in range(1, 6)) / 5 for n in names}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(SHARED_ZIP) if SHARED_ZIP.is_file() else "builtin")
    parser.add_argument("--images", type=int, default=0, help="images for the sweep (default: the whole test split)")
    parser.add_argument("--generation-images", type=int, default=1000, help="images per corruption for the per-corruption timing")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for the sweep (default: all cores)")
    parser.add_argument("--generation-threads", type=int, default=1,
                        help="torch threads when timing generation against the official generator, a single process")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--family", default="mobilenet_v1", help="model family of the small model (default: the fastest)")
    parser.add_argument("--multiplier", type=float, default=0.0, help="width multiplier; 0 = the GEARnn backbone")
    parser.add_argument("--official-python", help="python of an environment able to run the official generator")
    parser.add_argument("--checkout", help="a clone of hendrycks/robustness (with --official-python)")
    parser.add_argument("--official-images", type=int, default=20)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from gear_trt.corruptions import ALL_CORRUPTIONS, CORRUPTIONS, sweep

    if args.threads:
        torch.set_num_threads(args.threads)
    images, labels, total = load_test_set(args.source, args.images)
    print(f"data: {args.source} test split, {len(images)} of {total} images; torch threads {torch.get_num_threads()}, "
          f"cpu count {os.cpu_count()}; load average {os.getloadavg()[0]:.1f} (figures are noisy under load)")

    ours = time_generation(images[: args.generation_images], ALL_CORRUPTIONS, "cifar", args.generation_threads)
    sample = images[: args.official_images].cpu().numpy()
    if args.official_python and args.checkout:
        official = official_now(args.official_python, args.checkout, sample, ALL_CORRUPTIONS)
        official_note = f"official generator run now on {len(sample)} images per corruption and severity"
    else:
        official = official_recorded(ALL_CORRUPTIONS)
        official_note = f"official generator seconds recorded in {REFERENCE.relative_to(REPO)}"
    print(f"\ncorruption generation, ms per image (mean over severities 1-5), ours on {args.generation_threads} "
          f"thread(s), best of 2; {official_note}")
    print(f"  {'corruption':18s} {'ours':>8s} {'official':>9s} {'speed-up':>9s}")
    for name in ALL_CORRUPTIONS:
        tag = "" if name in CORRUPTIONS else "  (extra)"
        print(f"  {name:18s} {1e3 * ours[name]:8.3f} {1e3 * official[name]:9.3f} {official[name] / ours[name]:8.1f}x{tag}")
    ours_15 = sum(ours[n] for n in CORRUPTIONS)
    official_15 = sum(official[n] for n in CORRUPTIONS)
    print(f"  {'all 15 (sum)':18s} {1e3 * ours_15:8.3f} {1e3 * official_15:9.3f} {official_15 / ours_15:8.1f}x")
    figures = {"images": len(images), "threads": torch.get_num_threads(), "generation_threads": args.generation_threads,
               "load_average": os.getloadavg()[0],
               "ours_seconds_per_image": ours, "official_seconds_per_image": official, "official_note": official_note,
               "speedup_15": official_15 / ours_15}

    if not args.skip_sweep:
        model, described = small_model(args.family, args.multiplier)
        inference = [0.0]

        def predict(batch):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            out = model(batch)
            inference[0] += time.perf_counter() - start
            return out

        start = time.perf_counter()
        results = sweep(predict, images, labels, preset="cifar", batch_size=args.batch_size, progress=True)
        seconds = time.perf_counter() - start
        passes = 76 * len(images)
        scale = 10000 / len(images)
        generation = seconds - inference[0]
        print(f"\nsweep, 15 corruptions x 5 severities + clean, {len(images)} images, model {described}, "
              f"{torch.get_num_threads()} threads:")
        print(f"  total {seconds:.0f} s ({1e3 * seconds / passes:.3f} ms per image pass): corruption generation "
              f"{generation:.0f} s ({1e3 * generation / passes:.3f} ms), inference {inference[0]:.0f} s "
              f"({1e3 * inference[0] / passes:.3f} ms)")
        print(f"  for 10,000 images: {seconds * scale / 60:.1f} min (generation {generation * scale / 60:.1f} min, "
              f"inference {inference[0] * scale / 60:.1f} min); limit 15 min -> "
              f"{'met' if seconds * scale < 900 else 'NOT met'}")
        print(f"  (untrained weights, so accuracies are meaningless: clean {results.clean_acc:.3f}, "
              f"robust {results.mean_corruption_acc:.3f})")
        figures.update(sweep_seconds=seconds, sweep_generation_seconds=generation, sweep_inference_seconds=inference[0],
                       sweep_minutes_for_10000=seconds * scale / 60, model=described)
    if args.output:
        from gear_trt.io import atomic_write_json

        atomic_write_json(args.output, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

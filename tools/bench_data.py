"""Data pipeline benchmark: the packed cache against decoding JPEGs every epoch.

Prints images/s of
  (a) decoding every image of the split from the zip with PIL (what an epoch costs without a cache;
      the toolkit's own thread-pool decoder, so this is the best case for decoding),
  (b) loading the packed cache file (once per run),
  (c) one training epoch of BatchLoader from memory: shuffle, crop + flip, normalise,
and the share of a training step spent loading, for the backbone of --arch at --batch-size on
--device (forward + backward + SGD step timed on random data).

Targets: (c) at least 5x (a); loading under 10% of a step.

    python tools/bench_data.py [--source builtin] [--split train] [--arch vgg19] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(fn, repeat: int) -> float:
    """The fastest of `repeat` runs, in seconds (the least disturbed by other load on the machine)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="builtin", help="a zip or folder source (default: builtin)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--arch", default="vgg19")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch and decoder threads (default: all cores)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions; the best counts")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    args = parser.parse_args()

    import torch

    from gear_trt.data import BatchLoader, load_source
    from gear_trt.data.decode import pack
    from gear_trt.data.sources import ImageTree, parse_source
    from gear_trt.models import backbone_spec, build_model

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    kind, path, name = parse_source(args.source)
    if kind not in ("zip", "dir"):
        raise SystemExit("--source must be an image-folder tree or a zip of one (builtin is a zip)")

    with tempfile.TemporaryDirectory() as cache:
        # (a) decode every JPEG, as an uncached epoch would
        tree = ImageTree.open(kind, path)
        folder = tree.split_folder(args.split)
        names = [n for c in tree.classes_for(folder) for n in tree.files(folder, c)]

        def decode_epoch() -> None:
            reader = tree.reader()
            try:
                pack(reader, names, None, workers=threads, progress=False)
            finally:
                reader.close()

        t_decode = timed(decode_epoch, args.repeat)

        # (b) pack once, then time loading the packed cache
        ds = load_source(args.source, args.split, cache_dir=cache, progress=False)
        t_cache = timed(lambda: load_source(args.source, args.split, cache_dir=cache, progress=False), args.repeat)

    # (c) one augmented training epoch from memory
    loader = BatchLoader(ds, args.batch_size, train=True, device=args.device, seed=0)

    def loader_epoch() -> None:
        for _batch in loader:
            pass
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()

    t_epoch = timed(loader_epoch, args.repeat)
    per_batch = t_epoch / len(loader)

    # a training step of the backbone
    spec = backbone_spec(args.arch, num_classes=ds.num_classes, input_size=ds.image_size)
    model = build_model(spec).to(args.device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(args.batch_size, 3, ds.image_size, ds.image_size, device=args.device)
    y = torch.randint(0, ds.num_classes, (args.batch_size,), device=args.device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if x.is_cuda:
            torch.cuda.synchronize()

    step()  # warm-up
    step_times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        step_times.append(time.perf_counter() - start)
    t_step = statistics.median(step_times)

    n = len(names)
    rows = [
        ("(a) decode JPEGs every epoch", n / t_decode, f"{t_decode:.3f} s/epoch"),
        ("(b) load packed cache (once)", len(ds) / t_cache, f"{t_cache:.3f} s"),
        ("(c) packed + BatchLoader epoch", len(loader) * args.batch_size / t_epoch, f"{t_epoch:.3f} s/epoch"),
    ]
    print(f"data: {args.source} {args.split}, {n} images {ds.image_size}x{ds.image_size}; {threads} threads; device {args.device}")
    print(f"{'pipeline':34} {'images/s':>12}   time")
    for label, rate, note in rows:
        print(f"{label:34} {rate:12,.0f}   {note}")
    speedup = t_decode / n / (t_epoch / (len(loader) * args.batch_size))
    share = per_batch / (per_batch + t_step)
    print(f"packed loader vs decoding: {speedup:.1f}x (target >= 5x) {'OK' if speedup >= 5 else 'MISSED'}")
    print(
        f"{args.arch} backbone ({spec.widths[0]}.. widths) step at batch {args.batch_size}: {t_step * 1e3:.1f} ms; "
        f"loading {per_batch * 1e3:.2f} ms = {share:.1%} of a step (target < 10%) {'OK' if share < 0.10 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

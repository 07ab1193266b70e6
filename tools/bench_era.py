"""Benchmark ERA (batched AugMix) against torchvision's per-image AugMix, and its cost in a training epoch.

    python tools/bench_era.py                       # CPU, 1 thread
    python tools/bench_era.py --device cuda --threads 4 --json era_bench.json

1. Throughput: images/s of ERA on a batch of CIFAR images (builtin set, random uint8 if absent) on
   --device, against torchvision.transforms.AugMix applied per image on the CPU to uint8 tensors and
   to PIL images, with the same settings (severity 3, depth 1..3, alpha 1, all_ops=False: the
   AugMix paper's 9 ops, which are ERA's). Runs interleaved, best of --repeats each.
2. Epoch cost: seconds per training epoch of backbone_spec("vgg19") on --train-images images with a
   minimal SGD loop over BatchLoader (crop/flip on the device), clean vs ERA (the augment hook) vs
   ERA + JSD (3 views, cross-entropy + 12 x JSD; shown for information, the target is for ERA).
   Epochs of each kind alternate; best of --epochs after one warm-up epoch each.

Targets (issue 3): ERA >= 10x torchvision's images/s; ERA epoch <= 1.3x the clean epoch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gear_trt.data.era import ERA, ERAConfig  # noqa: E402
from gear_trt.train.jsd import era_loss  # noqa: E402

SPEEDUP_TARGET = 10.0
EPOCH_RATIO_TARGET = 1.3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def load_images(n: int, seed: int):
    """(ImageSet or None, uint8 NCHW [n, 3, 32, 32]): the builtin CIFAR subset, else random pixels."""
    try:
        from gear_trt.data import load_source

        ds = load_source("builtin", "train")
        return ds, ds.images[:n].permute(0, 3, 1, 2).contiguous()
    except Exception as exc:  # the data helper's module missing or the builtin set absent
        print(f"note: builtin data unavailable ({exc}); using random uint8 images", file=sys.stderr)
        g = torch.Generator().manual_seed(seed)
        return None, torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)


def throughput(images_u8: torch.Tensor, width: int, device: torch.device, repeats: int) -> dict[str, float]:
    from PIL import Image
    from torchvision.transforms import AugMix

    n = len(images_u8)
    reference = AugMix(severity=3, mixture_width=width, chain_depth=-1, alpha=1.0, all_ops=False)
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images_u8]
    era = ERA(ERAConfig(width=width, depth=3, severity=3, alpha=1.0))
    x = images_u8.to(device).float().div_(255)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        era(x, generator)  # warm-up: caches, allocator, kernels
    # Interleaved, best of `repeats`: load on a shared machine then hits all three alike. ERA's
    # figure is the mean of 10 calls per repeat, so it spans a similar time to torchvision's loop.
    cpu = torch.device("cpu")
    runs = [(_seconds(lambda: [reference(img) for img in images_u8], cpu),
             _seconds(lambda: [reference(img) for img in pil], cpu),
             _seconds(lambda: [era(x, generator) for _ in range(10)], device) / 10) for _ in range(repeats)]
    tv_tensor, tv_pil, era_s = (min(column) for column in zip(*runs))
    tv_best = min(tv_tensor, tv_pil)
    return {"width": width, "batch": n, "tv_tensor_ips": n / tv_tensor, "tv_pil_ips": n / tv_pil,
            "era_ips": n / era_s, "speedup": tv_best / era_s}


def epoch_times(ds, n_images: int, batch: int, device: torch.device, epochs: int, seed: int) -> dict[str, list[float]]:
    from gear_trt.data import BatchLoader
    from gear_trt.models import backbone_spec, build_model

    subset = ds.subset(torch.arange(min(n_images, len(ds))))
    hooks = {"clean": None, "era": ERA(), "era+jsd": ERA(ERAConfig(jsd=True))}
    loaders = {k: BatchLoader(subset, batch, train=True, device=device, seed=seed, augment=h) for k, h in hooks.items()}
    torch.manual_seed(seed)
    model = build_model(backbone_spec("vgg19")).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
    model.train()

    def run_epoch(loader, epoch: int) -> float:
        loader.set_epoch(epoch)
        _sync(device)
        start = time.perf_counter()
        for x, y in loader:
            if isinstance(x, tuple):  # clean + 2 AugMix views: one forward pass over all three
                clean, view1, view2 = model(torch.cat(x)).chunk(3)
                loss = era_loss(clean, view1, view2, y)
            else:
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {k: [] for k in loaders}
    for epoch in range(epochs + 1):  # epoch 0 warms up every kind
        for kind, loader in loaders.items():
            seconds = run_epoch(loader, epoch)
            if epoch > 0:
                times[kind].append(seconds)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (torchvision's per-image AugMix uses one)")
    parser.add_argument("--batch", type=int, default=256, help="images per ERA call in the throughput test")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--widths", default="1,3", help="mixture widths to compare (ERA uses 1, AugMix 3)")
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-epoch", action="store_true", help="only the throughput table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ds, images = load_images(args.batch, args.seed)
    print(f"device {device}, torch threads {args.threads}, torch {torch.__version__}")

    rows = [throughput(images, int(w), device, args.repeats) for w in args.widths.split(",")]
    print(f"\nThroughput, batch {args.batch} CIFAR 32x32 (images/s, best of {args.repeats}); severity 3, depth 1..3")
    print(f"| W | torchvision tensor (CPU) | torchvision PIL (CPU) | ERA ({device.type}) | speedup | target >= {SPEEDUP_TARGET:g}x |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ok = "PASS" if r["speedup"] >= SPEEDUP_TARGET else "FAIL"
        print(f"| {r['width']} | {r['tv_tensor_ips']:.0f} | {r['tv_pil_ips']:.0f} | {r['era_ips']:.0f} | {r['speedup']:.1f}x | {ok} |")

    result: dict[str, object] = {"device": str(device), "threads": args.threads, "throughput": rows}
    if not args.skip_epoch:
        if ds is None:
            print("\nepoch test skipped: it needs gear_trt.data's builtin set")
        else:
            times = epoch_times(ds, args.train_images, args.train_batch, device, args.epochs, args.seed)
            clean = min(times["clean"])
            print(f"\nEpoch of vgg19 backbone, {min(args.train_images, len(ds))} images, batch {args.train_batch} "
                  f"(seconds, best of {args.epochs}; median in brackets)")
            print(f"| kind | seconds | ratio to clean | target <= {EPOCH_RATIO_TARGET:g}x |")
            print("|---|---|---|---|")
            for kind, values in times.items():
                ratio = min(values) / clean
                verdict = "" if kind != "era" else ("PASS" if ratio <= EPOCH_RATIO_TARGET else "FAIL")
                if kind == "era+jsd":
                    verdict = "(info: 3x the forward/backward work)"
                print(f"| {kind} | {min(values):.3f} [{statistics.median(values):.3f}] | {ratio:.2f}x | {verdict} |")
            result["epochs"] = times
    if args.json:
        from gear_trt.io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Training speed per family at backbone and grown widths, and what One-Shot Growth costs.

    python tools/bench_train.py [--families vgg19 mobilenet_v1 resnet18] [--batch 128] [--steps 8] [--device cpu]
                                [--growers firefly gradmax random] [--epoch-batches 39]

For each family prints: training images/s of the backbone and of the net grown by the paper's ratio;
peak memory of a firefly growth step vs a grown-size training step (CUDA: max_memory_allocated; CPU: peak
RSS of a fresh subprocess per measurement, minus its idle RSS); and what one whole growth costs per
grower, in backbone epochs: the wall time of `grow()` as the pipeline calls it (its pass length, held-out
and calibration batches included) over an epoch of `--epoch-batches` backbone training steps (default 39:
the main job's 5,000 images at batch 128; full CIFAR-10 is 390).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATIOS = {"vgg19": 0.9, "mobilenet_v1": 1.8, "resnet18": 0.6}


def measure(kind: str, family: str, batch: int, steps: int, device: str, epoch_batches: int = 39) -> dict:
    import torch

    from gear_trt.grow.budget import growth_ratio_budget
    from gear_trt.grow.candidates import GrowthCandidates, default_new_counts
    from gear_trt.grow.osg import select
    from gear_trt.models import backbone_spec, build_model, count_params

    torch.manual_seed(0)
    spec = backbone_spec(family)
    dev = torch.device(device)
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    loss_fn = torch.nn.CrossEntropyLoss()
    if kind == "grown":  # the paper-ratio net, grown with uniform scores (the widths are what matter for speed)
        import numpy as np

        ratio = RATIOS[family]
        counts = default_new_counts(spec, max(0.5, ratio - 0.5))
        ks, kn, _ = select(spec, growth_ratio_budget(spec, ratio), [np.ones(w) for w in spec.widths], [np.ones(k) for k in counts])
        spec = spec.with_widths([w + a.sum() + b.sum() for w, a, b in zip(spec.widths, ks, kn)])
    model = build_model(spec).to(dev)
    if kind.startswith("grow:"):
        return {"kind": kind, "family": family, "seconds": whole_growth(kind.split(":")[1], family, spec, model, x, y, epoch_batches)}
    if kind == "growth":
        from torch.func import functional_call

        ratio = RATIOS[family]
        cands = GrowthCandidates(model.eval(), spec, default_new_counts(spec, max(0.5, ratio - 0.5)))
        expanded = cands.expanded_model()
        s, t = cands.zero_gates(0.01)
        opt = torch.optim.RMSprop(cands.cand.parameters(), lr=1e-3)

        def step() -> None:
            loss = loss_fn(functional_call(expanded, cands.expanded_state(s, t), (x,)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        model.train()

        def step() -> None:
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    step()  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"kind": kind, "family": family, "params": count_params(spec), "step_s": seconds, "images_per_s": batch / seconds, "peak_bytes": peak}


def whole_growth(grower: str, family: str, spec, model, x, y, epoch_batches: int) -> float:
    """Seconds of one `grow()` call as the pipeline makes it, over an epoch of `epoch_batches` batches."""
    import math

    from gear_trt.grow import GrowthConfig, grow
    from gear_trt.grow.budget import growth_ratio_budget
    from gear_trt.grow.osg import reachable_new_ratio
    from gear_trt.pipeline.stages import GrowOptions

    budget = growth_ratio_budget(spec, RATIOS[family])
    opts = GrowOptions(arch=family, grower=grower)
    config = GrowthConfig(grower=grower, new_ratio=reachable_new_ratio(spec, budget, grower, opts.new_ratio),
                          max_batches=max(1, math.ceil(opts.growth_pass * epoch_batches)))

    class Epoch:
        def __len__(self) -> int:
            return epoch_batches

        def __iter__(self):
            return ((x, y) for _ in range(epoch_batches))

    t0 = time.perf_counter()
    grow(model, spec, Epoch, budget, config)
    return time.perf_counter() - t0


def in_subprocess(kind: str, family: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--one", kind, family, "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device,
           "--epoch-batches", str(args.epoch_batches)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def idle_rss() -> int:
    code = "import resource, torch, gear_trt.models; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
    return int(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT).stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=list(RATIOS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--growers", nargs="+", default=["firefly", "gradmax", "random"])
    ap.add_argument("--epoch-batches", type=int, default=39, help="backbone epoch length for the growth cost (39: the main job)")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "FAMILY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.batch, args.steps, args.device, args.epoch_batches)))
        return 0
    base = 0 if args.device.startswith("cuda") else idle_rss()
    print(f"batch {args.batch}, {args.steps} timed steps, device {args.device}" + ("" if base == 0 else f", idle RSS {base / 2**20:.0f} MiB subtracted"))
    print(f"{'family':<13} {'backbone img/s':>15} {'grown img/s':>12} {'params b->g':>19} {'peak MiB grown | growth step':>29}  "
          + "  ".join(f"{g + ' (epochs)':>18}" for g in args.growers))
    for fam in args.families:
        r = {k: in_subprocess(k, fam, args) for k in ("backbone", "grown", "growth", *(f"grow:{g}" for g in args.growers))}
        mib = lambda k: (r[k]["peak_bytes"] - base) / 2**20  # noqa: E731
        epoch_s = args.epoch_batches * r["backbone"]["step_s"]
        print(f"{fam:<13} {r['backbone']['images_per_s']:>15.0f} {r['grown']['images_per_s']:>12.0f} "
              f"{r['backbone']['params']:>9,}->{r['grown']['params']:<9,} {mib('grown'):>14.0f} | {mib('growth'):<12.0f}  "
              + "  ".join(f"{r[f'grow:{g}']['seconds'] / epoch_s:>18.2f}" for g in args.growers))
    print(f"growth cost: one whole grow() call over a backbone epoch of {args.epoch_batches} training steps at batch {args.batch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

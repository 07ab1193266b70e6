#!/usr/bin/env python
"""Reproduce the paper's comparison: GEARnn-2, GEARnn-1, Small(D_in), Small(D_aug) at equal final size, over seeds.

    python tools/paper_comparison.py --out OUT [--preset cpu|quick|paper] [--seeds 0 1 2] [--arch vgg19]
                                     [--data ../shared/data/cifar10-jpeg.zip] [--sensitivity 0.3 0.6 0.9 1.2]
                                     [--sequential | --address HEAD:6379] [--write-spec SPEC.json]

A thin preset of `gear-trt sweep`: it writes the study as a sweep SPEC and runs it (Ray Tune when
installed, else one trial after another), so OUT is an ordinary sweep directory and
`gear-trt sweep SPEC.json --out OUT` (on a laptop or a cluster) makes the same runs and report.

For each seed: a GEARnn-2 run fixes the final size; GEARnn-1 grows to the same budget; both Small
baselines copy the GEARnn-2 grown spec (`like: gearnn2`), so all four end at the same widths or budget.
Writes OUT/comparison.json and OUT/comparison.md (mean ± std over seeds: clean and robust accuracy,
training time, energy, and the time/energy ratios the paper reports for GEARnn-2 vs Small(D_aug)), and
OUT/results.* (every run). With --sensitivity: GEARnn-2 at each growth ratio and seed ->
OUT/sensitivity.json and sensitivity.png (mean ± std).

Presets: "cpu" = the CPU protocol (docs/paper_comparison.md): 12 / grow / 12 / 12 epochs vs 48 for the
baselines on 1,000 train / 500 test images per class of CIFAR-10 (JPEG), robust accuracy after every
epoch on a pre-corrupted 1,000-image probe (GEARnn-2 + Small(D_aug): about 30 min of one CPU thread
per seed); "quick" = the quick schedule on 500 / 100 images per class (minutes, seed noise of several pp);
"paper" = 40/1/40/40 and 160 epochs on the full data (a GPU job). Runs already finished in OUT are
reused, unfinished ones resume.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gear_trt import choices  # noqa: E402 - after the sys.path line above

PIPELINES = tuple(choices.PIPELINES)
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"preset": "cpu", "train_per_class": 1000, "test_per_class": 500},
    "quick": {"preset": "quick", "train_per_class": 500, "test_per_class": 100, "robust_eval": "200"},
    "paper": {"preset": "paper", "robust_eval": "full"},
}


def paper_spec(*, preset: str = "cpu", arch: str = "vgg19", data: str = "builtin", seeds: tuple[int, ...] = (0, 1, 2),
               growth_ratio: Optional[float] = None, pipelines: tuple[str, ...] = PIPELINES,
               sensitivity: tuple[float, ...] = (), device: str = "auto") -> dict[str, Any]:
    """The study as a sweep SPEC: the comparison grid, plus GEARnn-2 over growth ratios for the sensitivity."""
    from gear_trt.pipeline.stages import PAPER_GROWTH_RATIO

    ratio = growth_ratio if growth_ratio is not None else PAPER_GROWTH_RATIO[arch]
    if any(p.startswith("small") for p in pipelines) and "gearnn2" not in pipelines:
        pipelines = ("gearnn2", *pipelines)  # the baselines copy its size
    # growth_ratio is a list (an axis) so it names the runs whether or not a sensitivity grid is added later
    grids: list[dict[str, Any]] = [{"pipeline": list(pipelines), "growth_ratio": [ratio], "like": "gearnn2"}]
    if sensitivity:  # the comparison's GEARnn-2 runs are the sensitivity's at `ratio`: the sweep runs them once
        grids.append({"pipeline": "gearnn2", "growth_ratio": sorted({*sensitivity, ratio})})
    return {**PRESETS[preset], "arch": arch, "data": data, "device": device, "seed": list(seeds), "grids": grids,
            "deploy_cost": True}  # int8 size and onnxruntime latency of every final model in the table


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", choices=PRESETS, default="cpu")
    ap.add_argument("--arch", default="vgg19")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--growth-ratio", type=float, help="default: the paper's ratio for the arch")
    ap.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    ap.add_argument("--sensitivity", type=float, nargs="*", default=[], help="growth ratios for the sensitivity study (GEARnn-2, every seed)")
    ap.add_argument("--device", default="auto")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--sequential", action="store_true", help="one run after another in this process, without Ray (default when Ray is missing)")
    where.add_argument("--address", help="run on this Ray cluster (see gear-trt sweep --address)")
    ap.add_argument("--write-spec", type=Path, metavar="SPEC", help="only write the study's SPEC (for `gear-trt sweep SPEC --out OUT`) and exit")
    args = ap.parse_args(argv)

    from gear_trt._deps import has_module
    from gear_trt.errors import GearError
    from gear_trt.sweep import plan_sweep, run_sweep

    spec = paper_spec(preset=args.preset, arch=args.arch, data=args.data, seeds=tuple(args.seeds), growth_ratio=args.growth_ratio,
                      pipelines=tuple(args.pipelines), sensitivity=tuple(args.sensitivity), device=args.device)
    if args.write_spec:
        args.write_spec.write_text(json.dumps(spec, indent=2) + "\n")
        print(f"wrote {args.write_spec}: run it with `gear-trt sweep {args.write_spec} --out OUT [--address HEAD:6379]`")
        return 0
    sequential = args.sequential or (args.address is None and not has_module("ray.tune"))
    try:
        plan = plan_sweep(spec, args.out, local=args.address is None)
        left = run_sweep(plan, address=args.address, sequential=sequential)
    except GearError as exc:
        print(f"paper_comparison: error: {exc.message}" + (f" -- fix: {exc.fix}" if exc.fix else ""), file=sys.stderr)
        return 2
    if (args.out / "comparison.md").is_file():
        print((args.out / "comparison.md").read_text(encoding="utf-8"))
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())

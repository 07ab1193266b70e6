"""`gear-trt grow`: run a GEARnn pipeline or a baseline into a run directory (see gear_trt.pipeline.stages)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="builtin", help="builtin | cifar10:ROOT | cifar100:ROOT | image-folder dir | .zip (default: builtin)")
    p.add_argument("--arch", default="vgg19", choices=("vgg19", "mobilenet_v1", "resnet18"))
    size = p.add_mutually_exclusive_group()
    size.add_argument("--budget", help="final size: 250k (parameters), 1.5MB@int8 (deployed bytes), 300MB@train[:BATCH] (training memory)")
    size.add_argument("--growth-ratio", type=float, help="the paper's gamma: add gamma x (sum of widths) neurons (default: the paper's per-arch value)")
    p.add_argument("--pipeline", default="gearnn2", choices=("gearnn2", "gearnn1", "small-clean", "small-aug"))
    p.add_argument("--preset", default="quick", choices=("quick", "paper"), help="epochs per stage: quick (CPU minutes) or paper (40/1/40/40, baselines 160)")
    p.add_argument("--like", metavar="RUN_DIR", help="small-* baselines: copy the final spec of this GEARnn run (equal final size)")
    p.add_argument("--shots", type=int, default=1, help="growth steps (1 = One-Shot Growth; N splits the budget and the grown epochs)")
    p.add_argument("--grower", default="firefly", choices=("firefly", "gradmax", "random"),
                   help="growth operator: firefly (trained split/new candidates), gradmax (closed form), random (control)")
    p.add_argument("--new-ratio", type=float, default=0.5, help="new-neuron candidates per layer, as a fraction of its width")
    p.add_argument("--growth-pass", type=float, default=1.0, help="fraction of an epoch the growth candidates train for (paper: 1, one pass)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear lr warmup of each training stage, capped at half the stage (default 1)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--era-width", type=int, default=1, help="ERA mixture width W (paper: 1; AugMix: 3)")
    p.add_argument("--era-depth", type=int, default=3, help="ERA chain depth D (each chain uses 1..D ops)")
    p.add_argument("--era-severity", type=int, default=3, help="ERA op severity 1..10 (AugMix: 3)")
    p.add_argument("--jsd", action="store_true", help="add AugMix's Jensen-Shannon consistency loss (clean + 2 views, weight 12)")
    p.add_argument("--robust-eval", default="auto", help="corruption sweep per stage: auto (preset subset) | none | full | N images")
    p.add_argument("--train-per-class", type=int, help="use only N training images per class (CPU-sized runs)")
    p.add_argument("--test-per-class", type=int, help="use only N test images per class")
    p.add_argument("--epochs-scale", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--out", help="run directory (default: a new one under $GEAR_TRT_HOME/runs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")


def run(args: argparse.Namespace) -> int:
    import shutil

    from gear_trt.errors import GearError
    from gear_trt.pipeline.rundir import RunDir
    from gear_trt.pipeline.stages import GrowOptions, run_pipeline

    fields = GrowOptions.__dataclass_fields__
    opts = GrowOptions(**{k: v for k, v in vars(args).items() if k in fields}).validate()
    run_dir = RunDir.create(args.out, "grow", resume=args.resume)
    print(f"gear-trt grow: {opts.pipeline} on {opts.arch}, data {opts.data}, preset {opts.preset} -> {run_dir.path}", file=sys.stderr)
    try:
        summary = run_pipeline(run_dir, opts, echo=lambda line: print(line, file=sys.stderr))
    except GearError:
        if not args.resume and not run_dir.manifest.stages:  # a user error before any stage: leave nothing behind
            shutil.rmtree(run_dir.path, ignore_errors=True)
        raise
    print(format_table(summary))
    print(f"\nrun directory: {run_dir.path}  (next: gear-trt build-engine {run_dir.path})")
    return 0


def format_table(summary: dict) -> str:
    rows = [("stage", "params", "int8 MB", "clean %", "robust %", "time s", "energy J")]
    for s in summary.get("stages", []):
        pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}"  # noqa: E731
        rows.append((s["name"], f"{s['params']:,}", f"{s['param_bytes']['int8'] / 1e6:.3f}", pct(s.get("clean_acc")),
                     pct(s.get("robust_acc")), f"{s.get('seconds') or 0:.1f}", "n/a" if s.get("energy_j") is None else f"{s['energy_j']:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)

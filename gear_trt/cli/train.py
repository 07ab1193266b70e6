"""`gear-trt train`: train a fixed-size model (the paper's Small baselines) into a run directory.

    gear-trt train --arch vgg19 --params 250k --epochs 160 --augment era --out runs/small-aug
    gear-trt train --resume --out runs/small-aug          # continue a killed run, same options

The pipeline is gear_trt.pipeline.fixed; the options are defined once in gear_trt.pipeline.options.
Only argparse and the standard library load at import time (`--help` stays instant).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from gear_trt.pipeline.options import TrainOptions, add_options, given


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, TrainOptions, "train")


def run(args: argparse.Namespace) -> int:
    from gear_trt.cli.common import recorded_options, run_directory
    from gear_trt.errors import ArtifactError
    from gear_trt.pipeline.fixed import FINAL, prepare_fixed, run_fixed, widths_source
    from gear_trt.pipeline.rundir import RunDir
    from gear_trt.train.loop import resolve_device

    saved = recorded_options(args.out, "train", resume=args.resume)
    if args.resume:
        run = RunDir(args.out)
        if not run.checkpoint(FINAL).exists():
            raise ArtifactError(f"{run.path} has no {run.rel(run.checkpoint(FINAL))} to resume from",
                                "drop --resume and start a new run (choose a new --out)")
    values = given(args, TrainOptions)
    opts = TrainOptions.resolve(values, saved)
    if opts.widths_from and "arch" not in values and saved is None:  # the checkpoint's family
        opts = dataclasses.replace(opts, arch=widths_source(opts.widths_from).family)
    plan = prepare_fixed(opts, progress=not args.quiet)
    with run_directory(args.out, "train", resume=args.resume) as run_dir:
        if not args.quiet:
            print(f"run directory: {run_dir.path}", file=sys.stderr)
        entry, result = run_fixed(run_dir, plan, resume=args.resume, quiet=args.quiet)
    config, metrics = plan.config, result.metrics
    note = " (already complete)" if result.epochs_run == 0 else ""
    print(f"{plan.spec.family} {entry.params:,} params, {config.epochs} epoch{'s' if config.epochs != 1 else ''}{note}: "
          f"test acc {100 * (metrics.get('test_acc') or 0):.2f}%, train loss {metrics.get('loss', float('nan')):.4f}, "
          f"{metrics.get('seconds_total') or 0:.1f} s on {resolve_device(config.device)} -> {run_dir.checkpoint(FINAL)}")
    return 0

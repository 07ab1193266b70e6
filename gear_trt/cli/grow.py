"""`gear-trt grow`: run a GEARnn pipeline or a baseline into a run directory (see gear_trt.pipeline.stages).

Options are defined once in gear_trt.pipeline.options; everything a user can get wrong is checked
(options, data, budget, the run being resumed) before the run directory is created or touched.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from gear_trt.pipeline.options import GrowOptions, add_options, given


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_options(p, GrowOptions, "grow")


def run(args: argparse.Namespace) -> int:
    from gear_trt.cli.common import recorded_options, run_directory
    from gear_trt.pipeline.stages import like_spec, prepare, run_pipeline

    saved = recorded_options(args.out, "grow", resume=args.resume)
    values = given(args, GrowOptions)
    opts = GrowOptions.resolve(values, saved)
    if opts.like and "arch" not in values and saved is None:  # a baseline takes the --like run's family
        opts = dataclasses.replace(opts, arch=like_spec(opts.like).family)
    plan = prepare(opts, progress=not args.quiet)
    opts = plan.opts
    with run_directory(args.out, "grow", resume=args.resume) as run_dir:
        print(f"gear-trt grow: {opts.pipeline} on {opts.arch}, data {opts.data}, preset {opts.preset} -> {run_dir.path}", file=sys.stderr)
        summary = run_pipeline(run_dir, plan, echo=lambda line: print(line, file=sys.stderr), quiet=args.quiet)
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

"""`gear-trt sweep SPEC --out DIR`: a grid of `gear-trt grow` runs as Ray Tune trials (see gear_trt.sweep)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="JSON or YAML file: grow's options with underscores; a list is a grid axis "
                   "(e.g. {\"pipeline\": [\"gearnn2\", \"small-aug\"], \"seed\": [0, 1, 2]}); also resources_per_trial, grids, "
                   "deploy_cost (true: each final model's int8 ONNX size and onnxruntime batch-1 latency)")
    p.add_argument("--out", required=True, help="sweep directory: one run directory per trial, results.csv/.json/.md "
                   "(run the same command again to resume a killed sweep)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="join an existing Ray cluster (e.g. auto, HEAD:6379 after `ray start --head`); "
                       "default: a local Ray on this machine")
    where.add_argument("--sequential", action="store_true", help="run the trials one after another in this process, without Ray")


def run(args: argparse.Namespace) -> int:
    from gear_trt.sweep import load_spec, plan_sweep, run_sweep

    plan = plan_sweep(load_spec(args.spec), args.out, local=args.address is None)
    n = len(plan.trials)
    print(f"gear-trt sweep: {n} trial{'s' * (n != 1)} -> {plan.out}", file=sys.stderr)
    try:
        left = run_sweep(plan, address=args.address, sequential=args.sequential)
    except KeyboardInterrupt:
        left = {"": "unfinished"}
    if (plan.out / "results.md").is_file():
        print((plan.out / "results.md").read_text(encoding="utf-8"))
    failed = sum(status == "failed" for status in left.values())
    if failed:
        print(f"gear-trt sweep: {failed} trial(s) failed (their logs/trial.log says why); fix that and run the same command "
              "again to retry them", file=sys.stderr)
        return 1
    if left:
        print("gear-trt sweep: interrupted; finished trials are kept, run the same command again to continue", file=sys.stderr)
        return 130
    return 0

"""Sweeps: grids of `gear-trt grow` runs as Ray Tune trials (or one after another), and their report.

    spec.py     the SPEC (grow's options as a grid), checked in full, expanded into named trials
    runner.py   runs the unfinished trials (local Ray, a Ray cluster, or sequentially) and resumes
    report.py   results / comparison / sensitivity tables and figures, read from the run directories

Stdlib at import time: torch and Ray load only when trials are planned or run.
"""

from gear_trt.sweep.report import write_report
from gear_trt.sweep.runner import run_sweep, run_trial
from gear_trt.sweep.spec import Plan, Trial, load_spec, plan_sweep

__all__ = ["Plan", "Trial", "load_spec", "plan_sweep", "run_sweep", "run_trial", "write_report"]

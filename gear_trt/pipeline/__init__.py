"""Run directories, manifests and (in stages.py) the GEARnn pipeline built on them."""

from gear_trt.pipeline.rundir import (
    HOME_ENV,
    Manifest,
    RunDir,
    default_run_dir,
    environment,
    gear_home,
    stage_entry,
)

__all__ = ["HOME_ENV", "Manifest", "RunDir", "default_run_dir", "environment", "gear_home", "stage_entry"]

"""Training: the loop (SGD, schedules, AMP, exact resume), RNG states and lr schedules.

Names load lazily so `import gear_trt.train.schedule` (pure Python) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config", "TrainResult": "loop", "train": "loop", "CrossEntropy": "loop",
    "evaluate_accuracy": "loop", "accuracy_eval": "loop", "resolve_device": "loop", "first_view": "loop",
    "make_optimizer": "loop", "AMP_MODES": "config", "resolve_amp": "loop",
    "seed_everything": "rng", "rng_state": "rng", "set_rng_state": "rng",
    "lr_factor": "schedule", "SCHEDULES": "schedule",
    "jsd_loss": "jsd", "era_loss": "jsd", "era_views_loss": "jsd", "JSD_WEIGHT": "jsd",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"gear_trt.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'gear_trt.train' has no attribute '{name}'")

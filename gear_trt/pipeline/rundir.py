"""The run directory as the pipeline uses it: RunDir and Manifest (defined in gear_trt.rundir, which owns
every path and record of a run), plus the summary entries of trained stages, which need the model maths.

Stdlib only at import time; stage_entry and rebuild_entry import torch when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from gear_trt.records import StageEntry
from gear_trt.rundir import HOME_ENV, MANIFEST_FORMAT, Manifest, RunDir, default_run_dir, environment, gear_home, now_iso

__all__ = ["HOME_ENV", "MANIFEST_FORMAT", "Manifest", "RunDir", "default_run_dir", "environment", "gear_home", "now_iso",
           "rebuild_entry", "stage_entry"]


def stage_entry(name: str, *, checkpoint: str, spec: Mapping[str, Any], kind: str, epochs: int,
                seconds: Optional[float], clean_acc: Optional[float], robust_acc: Optional[float] = None,
                energy_j: Optional[float] = None, **more: Any) -> StageEntry:
    """One summary.json stage entry: size (parameters, deployed bytes per precision), widths, accuracies, cost."""
    from gear_trt.grow.budget import deployed_bytes  # imports torch: only when a summary is written
    from gear_trt.models import count_params
    from gear_trt.spec import ModelSpec

    model_spec = ModelSpec.from_dict(spec)
    return StageEntry(name=name, checkpoint=checkpoint, params=count_params(model_spec), param_bytes=dict(deployed_bytes(model_spec)),
                      widths=list(model_spec.widths), clean_acc=clean_acc, robust_acc=robust_acc, seconds=seconds,
                      energy_j=energy_j, epochs=epochs, kind=kind, extra=dict(more))


def rebuild_entry(run: RunDir, name: str, record: dict[str, Any]) -> Optional[StageEntry]:
    """The entry of a finished stage recorded by an older gear-trt (its manifest holds no entry) whose
    summary.json is gone: size and widths from its checkpoint, accuracy and time from the manifest.
    Energy was never in the manifest, so it stays unknown; `rebuilt` says where the entry came from."""
    from gear_trt.errors import ArtifactError
    from gear_trt.artifacts.checkpoint import checkpoint_spec, load_checkpoint

    ckpt = next((rel for rel in record.get("artifacts", {}) if rel.endswith(".pt")), None)
    if ckpt is None:
        return None
    try:
        payload = load_checkpoint(run.path / ckpt)
        spec = checkpoint_spec(payload, run.path / ckpt)
    except ArtifactError:
        return None
    params, metrics = record.get("params") or {}, record.get("metrics") or {}
    train = params.get("train") or params.get("options") or {}
    kind = "grow" if "budget" in params else "era" if name == "robust" else "baseline" if name == "small" else "train"
    clean = metrics.get("clean_acc", metrics.get("test_acc", (payload.get("metrics") or {}).get("test_acc")))
    return stage_entry(name, checkpoint=ckpt, spec=spec.to_dict(), kind=kind, epochs=train.get("epochs", payload.get("epochs", 1)),
                       seconds=record.get("seconds"), clean_acc=clean, robust_acc=metrics.get("robust_acc"),
                       rebuilt=f"from {Path(ckpt).name} and manifest.json (energy not recorded there)",
                       **({"augmented": params["augmented"]} if "augmented" in params else {}))

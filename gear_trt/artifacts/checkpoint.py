"""Checkpoints: atomic writes and weights-only loads. torch is imported by the functions that need it.

A checkpoint is a plain dict saved with torch.save and read back with
torch.load(weights_only=True), which refuses any pickle that would run code. Everything in it is
therefore tensors, numbers, strings, lists, tuples and dicts:

    {"format": "gear-trt-ckpt/1", "spec": ModelSpec.to_dict(), "model": state_dict,
     "optimizer": ..., "scheduler": ..., "scaler": ..., "rng": {...}, "epoch": done, "epochs": total,
     "complete": bool, "metrics": {...}, "history": [per-epoch dicts], "classes": [...],
     "stage": "train", "config": TrainConfig dict, "extra": {...}}

A model is rebuilt from a checkpoint by `gear_trt.models.load_model` (spec -> module -> weights).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Union

import numpy as np

from gear_trt.errors import ArtifactError
from gear_trt.io import atomic_write
from gear_trt.spec import ModelSpec

if TYPE_CHECKING:
    import torch

FORMAT = "gear-trt-ckpt/1"
PathLike = Union[str, "os.PathLike[str]"]


def save_checkpoint(path: PathLike, payload: Mapping[str, Any]) -> Path:
    """Write `payload` atomically (temp file + fsync + rename): a kill never leaves half a checkpoint."""
    import torch

    data = {"format": FORMAT, **payload}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a Python file, so a full disk surfaces as OSError(ENOSPC), not torch's "unexpected pos"
            torch.save(data, f)

    return atomic_write(path, write)


def plain(obj: Any) -> Any:
    """`obj` as values a weights-only load accepts: builtins, tensors, lists, tuples, dicts.

    Converts numpy scalars and arrays, paths and str subclasses (torch.__version__ is one);
    anything else is a programming error, caught here rather than when the file is loaded.
    """
    import torch

    if obj is None or type(obj) in (bool, int, float, str, torch.Tensor):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, (str, os.PathLike)):
        return str(obj) if isinstance(obj, str) else os.fspath(obj)
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, Mapping):
        return {plain(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj) if type(obj) in (list, tuple) else [plain(v) for v in obj]
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint (weights-only loads refuse it)")


def load_checkpoint(path: PathLike, *, map_location: Union[str, "torch.device"] = "cpu") -> dict[str, Any]:
    """Read a gear-trt checkpoint without executing any pickled code; ArtifactError if it is not one."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"checkpoint {path} does not exist", "check the path (a run keeps them in RUN_DIR/checkpoints/)")
    try:
        with warnings.catch_warnings():  # legacy/foreign pickles make torch warn before it refuses them
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types here: UnpicklingError, RuntimeError, EOFError, KeyError...
        text = str(exc)
        refused = next((ln.strip() for ln in text.splitlines() if "unsupported global" in ln.lower()), None)
        if refused:
            raise ArtifactError(f"{path} was refused by the weights-only loader: it references code ({refused[:160]})",
                                "only load checkpoints written by gear-trt; never load a pickle from an untrusted source") from None
        raise ArtifactError(f"{path} is not a readable checkpoint (truncated, corrupt or not a torch file: {type(exc).__name__})",
                            "re-run the stage that wrote it; --resume restarts from the last complete epoch") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ArtifactError(f"{path} is not a gear-trt checkpoint (format {found!r}, expected {FORMAT!r})",
                            "pass a checkpoint written by gear-trt (RUN_DIR/checkpoints/*.pt)")
    for key in ("spec", "model"):
        if key not in payload:
            raise ArtifactError(f"{path} has no '{key}' entry", "re-run the stage that wrote it")
    return payload


def checkpoint_spec(payload: Mapping[str, Any], path: PathLike = "checkpoint") -> ModelSpec:
    try:
        return ModelSpec.from_dict(payload["spec"])
    except Exception as exc:  # a spec from another version or a hand-edited file
        raise ArtifactError(f"{path} has an unreadable model spec: {exc}", "re-run the stage that wrote it") from None


def checkpoint_classes(payload: Mapping[str, Any], spec: ModelSpec) -> list[str]:
    """The class names a checkpoint records, or "0".."N-1" for one that records none."""
    return [str(c) for c in payload.get("classes") or range(spec.num_classes)]

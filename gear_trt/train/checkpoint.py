"""Checkpoints: atomic writes, weights-only loads, and the RNG states that make resume exact.

A checkpoint is a plain dict saved with torch.save and read back with
torch.load(weights_only=True), which refuses any pickle that would run code. Everything in it is
therefore tensors, numbers, strings, lists, tuples and dicts:

    {"format": "gear-trt-ckpt/1", "spec": ModelSpec.to_dict(), "model": state_dict,
     "optimizer": ..., "scheduler": ..., "scaler": ..., "rng": {...}, "epoch": done, "epochs": total,
     "complete": bool, "metrics": {...}, "history": [per-epoch dicts], "classes": [...],
     "stage": "train", "config": TrainConfig dict, "extra": {...}}
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from gear_trt.errors import ArtifactError
from gear_trt.io import atomic_write
from gear_trt.spec import ModelSpec

FORMAT = "gear-trt-ckpt/1"


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write `payload` atomically (temp file + fsync + rename): a kill never leaves half a checkpoint."""
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


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a gear-trt checkpoint without executing any pickled code; ArtifactError if it is not one."""
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


def checkpoint_spec(payload: Mapping[str, Any], path: str | os.PathLike = "checkpoint") -> ModelSpec:
    try:
        return ModelSpec.from_dict(payload["spec"])
    except Exception as exc:  # a spec from another version or a hand-edited file
        raise ArtifactError(f"{path} has an unreadable model spec: {exc}", "re-run the stage that wrote it") from None


def load_model(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """Build the checkpoint's model from its spec and load its weights. Returns (model in eval mode, spec, payload)."""
    from gear_trt.models import build_model

    payload = load_checkpoint(path, map_location=map_location)
    spec = checkpoint_spec(payload, path)
    model = build_model(spec)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ArtifactError(f"{path}: weights do not match its spec ({first[:160]})", "re-run the stage that wrote it") from None
    return model.eval(), spec, payload


# --- RNG states, as weights_only-safe values ---------------------------------------------------

def rng_state() -> dict[str, Any]:
    """Every global RNG a training step may draw from: torch (CPU and CUDA), numpy, python."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's random."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

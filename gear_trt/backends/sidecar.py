"""The JSON sidecar written next to a built engine: DeployMeta + the build facts of its backend.

    model.int8.engine       model.int8.engine.json = {**DeployMeta.to_dict(), "backend": "tensorrt",
                                                      "engine_sha256": ..., "tensorrt": {...}}
    model.fp32.ort.onnx     model.fp32.ort.onnx.json = {..., "backend": "onnxruntime", "onnxruntime": {...}}

DeployMeta.from_dict ignores the extra keys, so any gear-trt reader (gear_trt.runtime, the C++
runtime) gets the preprocessing and classes from the same file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Union

from gear_trt.deploy_meta import DeployMeta
from gear_trt.errors import ArtifactError
from gear_trt.io import atomic_write_json, sha256_file

PathLike = Union[str, "os.PathLike[str]"]
BACKENDS = ("tensorrt", "onnxruntime")


def sidecar_path(artifact: PathLike) -> Path:
    """`x.engine` -> `x.engine.json` (the name is appended, so x.fp16.engine and x.int8.engine never collide)."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def make_sidecar(meta: DeployMeta, backend: str, artifact: PathLike, section: Mapping[str, Any]) -> dict[str, Any]:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    return {**meta.to_dict(), "backend": backend, "engine": Path(artifact).name, "engine_sha256": sha256_file(artifact), backend: dict(section)}


def write_sidecar(artifact: PathLike, sidecar: Mapping[str, Any]) -> Path:
    return atomic_write_json(sidecar_path(artifact), dict(sidecar))


def read_sidecar(artifact: PathLike, *, backend: str) -> dict[str, Any]:
    """The sidecar of `artifact`, checked to be a `backend` sidecar whose engine hash matches the file."""
    path = sidecar_path(artifact)
    rebuild = f"rebuild it with `gear-trt build-engine` (it writes {path.name})"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{artifact} has no sidecar {path.name} (its precision, shapes and build facts)", rebuild) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"sidecar {path} is unreadable ({exc})", rebuild) from None
    if not isinstance(raw, dict) or raw.get("backend") != backend or not isinstance(raw.get(backend), dict):
        found = raw.get("backend") if isinstance(raw, dict) else type(raw).__name__
        raise ArtifactError(f"sidecar {path} describes a {found!r} artifact, not a {backend} one", rebuild)
    want = raw.get("engine_sha256")
    if want and Path(artifact).is_file() and sha256_file(artifact) != want:
        raise ArtifactError(f"{artifact} is not the file its sidecar describes (sha256 differs)", rebuild)
    DeployMeta.from_dict(raw)  # the metadata part must be complete too
    return raw

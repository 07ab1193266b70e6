"""The JSON sidecar beside a built engine: DeployMeta + the build facts of its backend.

    model.int8.engine       model.int8.engine.json = {**DeployMeta.to_dict(), "backend": "tensorrt",
                                                      "engine": ..., "engine_sha256": ..., "tensorrt": {...}}
    model.fp32.ort.onnx     model.fp32.ort.onnx.json = {..., "backend": "onnxruntime", "onnxruntime": {...}}

Read once per load (`read_sidecar`): the metadata is validated and the engine's sha256 checked
against the file there, and nowhere else. The C++ runtime (engines/src/deploy_meta.cpp) finds and
reads sidecars by the same rules.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from gear_trt.artifacts.meta import METADATA_KEY, DeployMeta
from gear_trt.errors import ArtifactError
from gear_trt.io import atomic_write_json, sha256_file

PathLike = Union[str, "os.PathLike[str]"]
BACKENDS = ("tensorrt", "onnxruntime")
REWRITE = "rebuild the engine with `gear-trt build-engine` to rewrite its sidecar"


def sidecar_path(artifact: PathLike) -> Path:
    """`model.engine` -> `model.engine.json` if present, else `model.json` if present; the first when neither is.
    gear-trt writes the first (appended, so x.fp16.engine and x.int8.engine never collide)."""
    artifact = Path(artifact)
    appended = artifact.with_name(artifact.name + ".json")
    if appended.exists():
        return appended
    replaced = artifact.with_suffix(".json")
    return replaced if replaced != artifact and replaced.exists() else appended


@dataclasses.dataclass(frozen=True)
class Sidecar:
    path: Path  # the .json file
    meta: DeployMeta
    raw: dict[str, Any]  # the whole document, with its backend section

    @property
    def backend(self) -> Optional[str]:
        """"tensorrt" or "onnxruntime"; None for plain metadata (a sidecar beside an ONNX file exported elsewhere)."""
        named = self.raw.get("backend")
        if isinstance(named, str):
            return named
        return next((b for b in BACKENDS if isinstance(self.raw.get(b), dict)), None)

    def section(self, backend: str) -> dict[str, Any]:
        """The build facts of `backend` ("tensorrt": version, GPU, batch range ...); ArtifactError if absent."""
        info = self.raw.get(backend)
        if self.backend != backend or not isinstance(info, dict):
            raise ArtifactError(f"{self.path}: the sidecar has no '{backend}' section, so this is not a {backend} engine"
                                + (f" (the sidecar is for {self.backend})" if self.backend else ""),
                                "load the model with the backend its sidecar names, or rebuild it with `gear-trt build-engine`")
        return info


def make_sidecar(meta: DeployMeta, backend: str, artifact: PathLike, section: Mapping[str, Any]) -> dict[str, Any]:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    return {**meta.to_dict(), "backend": backend, "engine": Path(artifact).name, "engine_sha256": sha256_file(artifact), backend: dict(section)}


def write_sidecar(artifact: PathLike, sidecar: Mapping[str, Any]) -> Path:
    artifact = Path(artifact)
    return atomic_write_json(artifact.with_name(artifact.name + ".json"), dict(sidecar))


def read_sidecar(artifact: PathLike) -> Sidecar:
    """The sidecar of `artifact`: metadata validated, and the engine's sha256 checked when it records one."""
    artifact = Path(artifact)
    path = sidecar_path(artifact)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"no metadata sidecar for {artifact} (looked for {path.name})",
                            "copy the <engine>.json that gear-trt wrote next to the engine (it carries the preprocessing, "
                            "classes and build facts), or rebuild both with `gear-trt build-engine`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: sidecar is unreadable or not valid JSON ({exc})", REWRITE) from None
    if isinstance(raw, dict) and "format" not in raw and isinstance(raw.get(METADATA_KEY), dict):  # metadata nested as in ONNX
        raw = {**raw[METADATA_KEY], **{k: v for k, v in raw.items() if k != METADATA_KEY}}
    meta = DeployMeta.from_dict(raw, str(path))
    sidecar = Sidecar(path, meta, raw)
    if sidecar.backend is not None and sidecar.backend not in BACKENDS:
        raise ArtifactError(f"{path}: unknown backend {sidecar.backend!r} (gear-trt writes {' or '.join(BACKENDS)})", REWRITE)
    want = raw.get("engine_sha256")
    if want and sha256_file(artifact) != want:
        raise ArtifactError(f"{artifact} is not the file its sidecar describes (sha256 differs)",
                            "copy the engine together with the .json written beside it, or rebuild both with `gear-trt build-engine`")
    return sidecar

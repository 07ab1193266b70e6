"""Reading deployment metadata (ONNX metadata_props or an engine's JSON sidecar) and checking it.

Validation here is the same as in the C++ core (engines/src/deploy_meta.cpp): a field the
runtime relies on must be present with the right JSON type, or loading fails with an
ArtifactError that names the field. Fields with a default in gear_trt.deploy_meta may be absent.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Optional

from gear_trt.deploy_meta import FORMAT, METADATA_KEY, DeployMeta
from gear_trt.errors import ArtifactError

SUPPORTED_LAYOUTS = ("NCHW",)
SUPPORTED_RESIZES = ("bilinear-half-pixel",)
SUPPORTED_DTYPES = ("float32",)
PREPROCESS_FIELDS = ("input_size", "mean", "std", "scale", "color", "layout", "resize")

_REEXPORT = "re-export the model with gear-trt (it writes complete metadata)"


def _fail(where: str, problem: str, fix: str = _REEXPORT) -> ArtifactError:
    return ArtifactError(f"{where}: {problem}", fix)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_raw(d: Any, where: str) -> None:
    """JSON types of the fields the runtimes use (DeployMeta.from_dict alone would coerce strings)."""
    if not isinstance(d, dict):
        raise _fail(where, "metadata is not a JSON object")
    if d.get("format") != FORMAT:
        raise _fail(where, f"metadata format is {d.get('format')!r}, expected {FORMAT!r}")
    pre = d.get("preprocess")
    if not isinstance(pre, dict):
        raise _fail(where, "metadata has no 'preprocess' object")
    unknown = sorted(set(pre) - set(PREPROCESS_FIELDS))
    if unknown:
        raise _fail(where, f"unknown preprocess fields {unknown}")
    size = pre.get("input_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise _fail(where, f"preprocess.input_size must be a positive integer, got {size!r}")
    for key in ("mean", "std"):
        v = pre.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(_is_number(x) and math.isfinite(x) for x in v)):
            raise _fail(where, f"preprocess.{key} must be 3 finite numbers, got {v!r}")
    if any(x == 0 for x in pre["std"]):
        raise _fail(where, f"preprocess.std has a zero: {pre['std']}")
    if "scale" in pre and not (_is_number(pre["scale"]) and math.isfinite(pre["scale"])):
        raise _fail(where, f"preprocess.scale must be a finite number, got {pre['scale']!r}")
    for key, allowed in (("color", ("RGB", "BGR")), ("layout", SUPPORTED_LAYOUTS), ("resize", SUPPORTED_RESIZES)):
        if key in pre and pre[key] not in allowed:
            raise _fail(where, f"preprocess.{key} {pre[key]!r} is not supported (supported: {', '.join(allowed)})", "re-export with a supported setting or upgrade gear-trt")
    classes = d.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise _fail(where, "metadata 'classes' must be a non-empty list of names")
    for key in ("input_name", "output_name", "input_dtype", "precision"):
        if key in d and not (isinstance(d[key], str) and d[key]):
            raise _fail(where, f"metadata '{key}' must be a non-empty string, got {d[key]!r}")
    if d.get("tensorrt") is not None and not isinstance(d["tensorrt"], dict):
        raise _fail(where, "the 'tensorrt' section must be an object", "rebuild the engine with gear-trt")
    if d.get("input_dtype", "float32") not in SUPPORTED_DTYPES:
        raise _fail(where, f"input dtype {d['input_dtype']!r} is not supported (float32 only)", "export the model with float32 input")


def parse_meta(raw: Any, where: str) -> DeployMeta:
    """A decoded JSON object (or its text) -> validated DeployMeta; `where` names the source in errors."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _fail(where, f"metadata is not valid JSON ({exc})") from exc
    _check_raw(raw, where)
    try:
        return DeployMeta.from_dict(raw)
    except ArtifactError as exc:
        raise _fail(where, exc.message, exc.fix) from exc


def sidecar_path(artifact: Path) -> Path:
    """`model.engine` -> `model.engine.json` if present, else `model.json`; the first when neither is."""
    appended = artifact.with_name(artifact.name + ".json")
    if appended.exists():
        return appended
    replaced = artifact.with_suffix(".json")
    return replaced if replaced.exists() and replaced != artifact else appended


def read_sidecar(artifact: Path) -> tuple[DeployMeta, dict[str, Any]]:
    """The DeployMeta and the whole JSON object (with its "tensorrt"/"backend" extras) beside `artifact`."""
    path = sidecar_path(artifact)
    if not path.is_file():
        raise ArtifactError(
            f"no metadata sidecar for {artifact} (looked for {path.name})",
            "copy the <engine>.json that gear-trt wrote next to the engine; it carries the preprocessing and class names",
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(str(path), f"sidecar is unreadable or not valid JSON ({exc})", "rebuild the engine with gear-trt to rewrite its sidecar") from exc
    if isinstance(raw, dict) and "format" not in raw and isinstance(raw.get(METADATA_KEY), dict):
        raw = {**raw[METADATA_KEY], **{k: v for k, v in raw.items() if k != METADATA_KEY}}
    return parse_meta(raw, str(path)), raw


def verify_artifact_hash(artifact: Path, sidecar: Mapping[str, Any]) -> None:
    """ArtifactError when the sidecar records an engine_sha256 that `artifact` does not have
    (e.g. model.engine was rebuilt or replaced but an old model.engine.json was kept)."""
    want = sidecar.get("engine_sha256")
    if not want:
        return
    digest = hashlib.sha256()
    with open(artifact, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != want:
        raise ArtifactError(
            f"{artifact} is not the file its sidecar describes (sha256 differs)",
            "copy the engine together with the .json written beside it, or rebuild both with gear-trt",
        )


def normalize_compute_capability(value: Any) -> Optional[str]:
    """'8.7', [8, 7], (8, 7), 8.7 or 'sm_87' -> '8.7'; None if absent or unrecognised."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}.{value[1]}"
    text = str(value).strip().lower()
    m = re.fullmatch(r"(?:sm_?)?(\d+)(\d)", text)
    if m and "." not in text:
        return f"{int(m.group(1))}.{m.group(2)}"
    m = re.fullmatch(r"(\d+)\.(\d+)", text)
    return f"{int(m.group(1))}.{int(m.group(2))}" if m else None


def _version_triple(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", str(text))
    return tuple(int(p) for p in parts[:3])


def check_tensorrt_compat(
    info: Mapping[str, Any],
    *,
    runtime_version: str,
    gpu_name: str,
    compute_capability: str,
    require_same_gpu: bool = True,
    where: str = "engine",
) -> None:
    """Raise ArtifactError unless an engine built as `info` (the sidecar's "tensorrt" section) runs here.

    TensorRT engines are tied to the TensorRT version (major.minor.patch compared) and to the GPU's
    compute capability. The GPU name is compared too unless `require_same_gpu` is False (same-SM
    boards can share an engine, but NVIDIA advises against it).
    """
    rebuild = "rebuild the engine on this device with `gear-trt build-engine` (engines are not portable across TensorRT versions or GPUs)"
    built = info.get("version")
    if not built:
        raise _fail(where, "sidecar's 'tensorrt' section has no 'version'", rebuild)
    b, r = _version_triple(built), _version_triple(runtime_version)
    if len(b) < 2 or len(r) < 2:
        raise _fail(where, f"cannot compare TensorRT versions {built!r} (engine) and {runtime_version!r} (runtime)", rebuild)
    if info.get("version_compatible"):
        if r < b:
            raise _fail(where, f"engine was built with TensorRT {built}, which is newer than this runtime's {runtime_version}", rebuild)
    elif b[: min(len(b), len(r))] != r[: min(len(b), len(r))]:
        raise _fail(where, f"engine was built with TensorRT {built}, this runtime is TensorRT {runtime_version}", rebuild)
    cc_built = normalize_compute_capability(info.get("compute_capability"))
    cc_here = normalize_compute_capability(compute_capability)
    if cc_built is None:
        raise _fail(where, f"sidecar's 'tensorrt' section has no usable 'compute_capability' ({info.get('compute_capability')!r})", rebuild)
    if cc_built != cc_here:
        raise _fail(where, f"engine was built for a GPU of compute capability {cc_built} ({info.get('gpu_name', '?')}), this GPU is {cc_here} ({gpu_name})", rebuild)
    name_built = str(info.get("gpu_name") or "")
    if require_same_gpu and name_built and name_built.strip() != str(gpu_name).strip():
        raise _fail(
            where,
            f"engine was built on {name_built!r}, this GPU is {gpu_name!r} (same compute capability {cc_here})",
            "rebuild the engine on this GPU, or pass require_same_gpu=False to run it anyway",
        )

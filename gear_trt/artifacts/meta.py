"""What a deployed model carries so an app can use it without the toolkit: the `gear-trt/1` schema.

Stored as JSON under the key "gear_trt" in an ONNX file's metadata_props, and as the sidecar
`<engine>.json` next to an engine (plus a backend section). The Python runtime and the C++ runtime
(engines/src/deploy_meta.cpp) accept and reject the same documents and preprocess exactly as below:

    1. the app gives uint8 RGB images, HWC (one) or NHWC (a batch);
    2. if H or W differs from input_size: bilinear resize with half-pixel centres and no
       antialiasing (torch's interpolate(mode="bilinear", align_corners=False, antialias=False));
    3. x = (pixel * scale - mean[c]) / std[c] in float32, laid out NCHW.

Every reader goes through `DeployMeta.from_dict`, which checks the JSON types of the fields the
runtimes rely on (a string where a number belongs is an error naming the field, not a coercion).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from gear_trt.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    from gear_trt.spec import ModelSpec

FORMAT = "gear-trt/1"
METADATA_KEY = "gear_trt"

# Per-channel statistics of CIFAR-10's training images (RGB, pixel/255).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

COLORS = ("RGB", "BGR")
LAYOUTS = ("NCHW",)
RESIZES = ("bilinear-half-pixel",)
INPUT_DTYPES = ("float32",)
PREPROCESS_FIELDS = ("input_size", "mean", "std", "scale", "color", "layout", "resize")
REEXPORT = "re-export the model with gear-trt (it writes complete metadata)"


@dataclasses.dataclass(frozen=True)
class Preprocess:
    input_size: int
    mean: tuple[float, float, float] = CIFAR_MEAN
    std: tuple[float, float, float] = CIFAR_STD
    scale: float = 1.0 / 255.0
    color: str = "RGB"
    layout: str = "NCHW"
    resize: str = "bilinear-half-pixel"


@dataclasses.dataclass(frozen=True)
class DeployMeta:
    preprocess: Preprocess
    classes: tuple[str, ...]
    input_name: str = "input"
    output_name: str = "logits"
    input_dtype: str = "float32"
    precision: str = "fp32"  # fp32 | fp16 | int8
    spec: Optional[dict[str, Any]] = None  # ModelSpec.to_dict()
    spec_hash: str = ""
    checkpoint: str = ""  # path or name of the source checkpoint
    lineage: dict[str, Any] = dataclasses.field(default_factory=dict)  # run, stage, parent hashes
    format: str = FORMAT

    @property
    def input_shape(self) -> list[int]:
        """NCHW with a dynamic batch (-1)."""
        s = self.preprocess.input_size
        return [-1, 3, s, s]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        d["input_shape"] = self.input_shape
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any, where: str = "model metadata") -> "DeployMeta":
        """A decoded JSON object -> DeployMeta, validated; `where` names the source in errors.
        Keys outside the schema (a sidecar's "backend", "tensorrt", ...) are ignored."""
        check_meta(d, where)
        pre = dict(d["preprocess"])
        for k in ("mean", "std"):
            pre[k] = tuple(float(v) for v in pre[k])
        fields = {f.name for f in dataclasses.fields(cls)}
        rest = {k: v for k, v in d.items() if k in fields and k not in ("preprocess", "classes")}
        return cls(preprocess=Preprocess(**pre), classes=tuple(d["classes"]), **rest)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "model metadata") -> "DeployMeta":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _fail(where, f"metadata is not valid JSON ({exc})") from None
        return cls.from_dict(raw, where)


def _fail(where: str, problem: str, fix: str = REEXPORT) -> ArtifactError:
    return ArtifactError(f"{where}: {problem}", fix)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_meta(d: Any, where: str) -> None:
    """ArtifactError naming the field unless `d` is a complete `gear-trt/1` document.
    Fields with a default in DeployMeta/Preprocess may be absent."""
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
        if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_number(x) and math.isfinite(x) for x in v)):
            raise _fail(where, f"preprocess.{key} must be 3 finite numbers, got {v!r}")
    if any(x == 0 for x in pre["std"]):
        raise _fail(where, f"preprocess.std has a zero: {pre['std']}")
    if "scale" in pre and not (_is_number(pre["scale"]) and math.isfinite(pre["scale"])):
        raise _fail(where, f"preprocess.scale must be a finite number, got {pre['scale']!r}")
    for key, allowed in (("color", COLORS), ("layout", LAYOUTS), ("resize", RESIZES)):
        if key in pre and pre[key] not in allowed:
            raise _fail(where, f"preprocess.{key} {pre[key]!r} is not supported (supported: {', '.join(allowed)})",
                        "re-export with a supported setting or upgrade gear-trt")
    classes = d.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise _fail(where, "metadata 'classes' must be a non-empty list of names")
    for key in ("input_name", "output_name", "input_dtype", "precision"):
        if key in d and not (isinstance(d[key], str) and d[key]):
            raise _fail(where, f"metadata '{key}' must be a non-empty string, got {d[key]!r}")
    if d.get("tensorrt") is not None and not isinstance(d["tensorrt"], dict):
        raise _fail(where, "the 'tensorrt' section must be an object", "rebuild the engine with gear-trt")
    if d.get("input_dtype", "float32") not in INPUT_DTYPES:
        raise _fail(where, f"input dtype {d['input_dtype']!r} is not supported (float32 only)", "export the model with float32 input")


def deploy_meta_for(spec: "ModelSpec", classes: Sequence[str], *, checkpoint: str = "", lineage: Optional[Mapping[str, Any]] = None,
                    precision: str = "fp32", preprocess: Optional[Preprocess] = None) -> DeployMeta:
    """The DeployMeta of a model built from `spec` (CIFAR normalisation unless `preprocess` says otherwise)."""
    if len(classes) != spec.num_classes:
        raise ConfigError(f"{len(classes)} class names for a model with {spec.num_classes} outputs", "pass one name per output")
    return DeployMeta(
        preprocess=preprocess or Preprocess(input_size=spec.input_size),
        classes=tuple(str(c) for c in classes),
        precision=precision,
        spec=spec.to_dict(),
        spec_hash=spec.hash,
        checkpoint=checkpoint,
        lineage=dict(lineage or {}),
    )

"""What a deployed model carries so an app can use it without the toolkit: the `gear-trt/1` schema.

Stored as JSON under the key "gear_trt" in an ONNX file's metadata_props, and as the sidecar
`<engine>.json` next to a TensorRT engine (plus a "tensorrt" section). The Python runtime
(gear_trt.runtime) and the C++ runtime (engines/) both read it and preprocess exactly as below:

    1. the app gives uint8 RGB images, HWC (one) or NHWC (a batch);
    2. if H or W differs from input_size: bilinear resize with half-pixel centres and no
       antialiasing (torch's interpolate(mode="bilinear", align_corners=False, antialias=False));
    3. x = (pixel * scale - mean[c]) / std[c] in float32, laid out NCHW.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Optional

from gear_trt.errors import ArtifactError

FORMAT = "gear-trt/1"
METADATA_KEY = "gear_trt"

# Per-channel statistics of CIFAR-10's training images (RGB, pixel/255).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


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
    def from_dict(cls, d: Mapping[str, Any]) -> "DeployMeta":
        if d.get("format") != FORMAT:
            raise ArtifactError(f"model metadata has format {d.get('format')!r}, expected {FORMAT!r}", "re-export the model with this gear-trt version")
        try:
            pre = dict(d["preprocess"])
            for k in ("mean", "std"):
                pre[k] = tuple(float(v) for v in pre[k])
            fields = {f.name for f in dataclasses.fields(cls)}
            rest = {k: v for k, v in d.items() if k in fields and k not in ("preprocess", "classes")}
            return cls(preprocess=Preprocess(**pre), classes=tuple(d["classes"]), **rest)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"model metadata is incomplete or malformed: {exc}", "re-export the model") from exc

    @classmethod
    def from_json(cls, text: str) -> "DeployMeta":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"model metadata is not valid JSON: {exc}", "re-export the model") from exc

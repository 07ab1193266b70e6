"""ModelSpec: a model as data (family, per-group widths, classes, input size).

A *width group* is a set of channels that must stay equal: one conv layer's outputs, or every
layer that feeds a residual sum, or a pointwise conv and the depthwise conv after it. Growth
changes only `widths`; `gear_trt.models.build_model(spec)` turns any spec into a module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping

from gear_trt.choices import FAMILIES
from gear_trt.errors import ConfigError

__all__ = ["FAMILIES", "ModelSpec"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    family: str
    widths: tuple[int, ...]
    num_classes: int = 10
    input_size: int = 32
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"unknown model family '{self.family}'", f"choose one of {', '.join(FAMILIES)}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if any(w < 1 for w in self.widths):
            raise ConfigError(f"every width must be >= 1, got {list(self.widths)}", "give each width group at least one channel")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {self.num_classes}", "a classifier needs data with at least two classes")
        if self.input_size < 8 or self.input_size % 8:
            raise ConfigError(f"input_size must be a multiple of 8 and >= 8, got {self.input_size}",
                              "resize the images to a multiple of 8 (--image-size 32, for example)")

    def with_widths(self, widths: tuple[int, ...] | list[int]) -> "ModelSpec":
        return dataclasses.replace(self, widths=tuple(widths))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown ModelSpec fields {sorted(unknown)}")
        fields: dict[str, Any] = {k: (tuple(v) if k == "widths" else v) for k, v in d.items()}
        return cls(**fields)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        return cls.from_dict(json.loads(text))

    @property
    def hash(self) -> str:
        """Stable 12-hex-digit id of the architecture (same spec -> same hash, across runs and machines)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

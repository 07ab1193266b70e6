"""The channel graph of a model: which width group each layer reads and writes.

Growth, parameter counting and budgets are written once against this table instead of once per
family. A group index refers to `spec.widths`; `None` means a fixed size (image channels on the
input side, classes on the output side).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

LayerKind = Literal["conv", "dwconv", "bn", "linear"]


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    name: str  # attribute path in the nn.Module, e.g. "features.3"
    kind: LayerKind
    in_group: Optional[int]
    out_group: Optional[int]
    kernel: int = 1  # square kernel side (1 for linear and bn)
    bias: bool = False  # conv/linear bias (bn always has weight, bias and running stats)

    def __post_init__(self) -> None:
        if self.kind in ("bn", "dwconv") and self.in_group != self.out_group:
            raise ValueError(f"{self.name}: {self.kind} layers are channel-wise, in_group must equal out_group")

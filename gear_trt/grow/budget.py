"""Budgets: what "fits the device" means, computed exactly from a spec's widths.

Kinds (all monotone in every width, so greedy selection can stop at the limit):
- neurons:  the paper's C(f) = sum of layer widths (used for --growth-ratio).
- params:   trainable parameters of build_model(spec).
- bytes:    weight payload of the deployed model at a precision, BatchNorm folded into the conv before it:
            conv/linear/depthwise weights at 4/2/1 bytes (fp32/fp16/int8) plus one bias per output channel
            (4 bytes, or 2 at fp16) and, for int8, one fp32 per-output-channel weight scale. Graph structure and
            file headers are not counted (a few kB in ONNX).
- train:    estimated peak training memory at a batch size, fp32 SGD with momentum: 3 copies of the parameters
            (weights, gradients, momentum) plus the activations autograd keeps for backward (the input, each
            conv's output and each BatchNorm's output, the classifier input), 4 bytes each. An estimate of the
            allocator's peak, not a measurement; the benchmark compares it with a measured peak.

Budget strings (CLI): "250k" or "1.2M" parameters; "1.5MB@int8", "800KiB@fp16" deployed bytes;
"300MB@train", "300MB@train:256" training memory at batch 128 (default) or the given batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Optional

import numpy as np

from gear_trt.choices import PRECISION_BYTES
from gear_trt.errors import BudgetError, ConfigError
from gear_trt.models import layer_table
from gear_trt.spec import ModelSpec

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_COUNT_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


@dataclasses.dataclass(frozen=True)
class Budget:
    kind: str  # neurons | params | bytes | train
    limit: float
    precision: str = "fp32"  # for kind == "bytes"
    batch: int = 128  # for kind == "train"

    def cost(self, spec: ModelSpec) -> float:
        return float(_CostModel.of(spec).cost(np.asarray(spec.widths), self))

    def fits(self, spec: ModelSpec) -> bool:
        return self.cost(spec) <= self.limit

    def describe(self, value: Optional[float] = None) -> str:
        v = self.limit if value is None else value
        if self.kind == "neurons":
            return f"{int(v)} neurons"
        if self.kind == "params":
            return f"{int(v):,} parameters"
        if self.kind == "bytes":
            return f"{v / 1e6:.3f} MB at {self.precision}"
        return f"{v / 1e6:.1f} MB training memory at batch {self.batch}"


def deployed_bytes(spec: ModelSpec) -> dict[str, int]:
    """The deployed weight bytes of `spec` at every precision (the "bytes" budget's accounting)."""
    return {p: int(Budget("bytes", 0, precision=p).cost(spec)) for p in PRECISION_BYTES}


def parse_budget(text: str) -> Budget:
    """'250k' -> params, '1.5MB@int8' -> deployed bytes, '300MB@train:256' -> training memory."""
    s = str(text).strip().replace("_", "").replace(",", "")
    m = re.fullmatch(r"(?i)(\d+(?:\.\d+)?(?:e\d+)?)\s*([a-z]*)\s*(?:@\s*([a-z0-9]+)(?::(\d+))?)?", s)
    if not m:
        raise ConfigError(f"cannot read budget '{text}'", "use e.g. 250k (parameters), 1.5MB@int8 (model bytes) or 300MB@train:128")
    number, unit, target, batch = float(m.group(1)), m.group(2).lower(), (m.group(3) or "").lower(), m.group(4)
    if not number > 0:
        raise ConfigError(f"budget '{text}' is not positive", "use e.g. 250k (parameters), 1.5MB@int8 (model bytes) or 300MB@train:128")
    if not target:
        if unit not in _COUNT_UNITS:
            raise ConfigError(f"budget '{text}' has a byte unit but no precision", "write e.g. 1.5MB@int8, 3MB@fp16 or 300MB@train")
        return Budget("params", number * _COUNT_UNITS[unit])
    if unit not in _UNITS:
        raise ConfigError(f"unknown size unit '{unit}' in budget '{text}'", "use B, KB, MB, GB, KiB, MiB or GiB")
    size = number * _UNITS[unit]
    if target == "train":
        if batch is not None and int(batch) < 1:
            raise ConfigError(f"budget '{text}' asks for training batch {batch}", "give a batch of 1 or more, e.g. 300MB@train:128")
        return Budget("train", size, batch=int(batch) if batch else 128)
    if batch is not None:
        raise ConfigError(f"budget '{text}' gives a batch, which only training-memory budgets take", "write e.g. 1.5MB@int8, or 300MB@train:128")
    if target not in PRECISION_BYTES:
        raise ConfigError(f"unknown precision '{target}' in budget '{text}'", f"use {', '.join(PRECISION_BYTES)} or train")
    return Budget("bytes", size, precision=target)


def parse_count(text: str, flag: str = "--params") -> int:
    """A parameter count as budgets write it: '250k' -> 250000, '1.2M' -> 1200000, '5e5' -> 500000."""
    try:
        budget = parse_budget(text)
    except ConfigError:
        budget = None
    if budget is None or budget.kind != "params":
        raise ConfigError(f"{flag} '{text}' is not a parameter count", f"e.g. {flag} 250k or {flag} 1.2M")
    return int(round(budget.limit))


def growth_ratio_budget(spec: ModelSpec, ratio: float) -> Budget:
    """The paper's gamma: add ratio x (current total neurons), C(f) = sum of widths."""
    if not (ratio > 0 and math.isfinite(ratio)):
        raise ConfigError(f"--growth-ratio must be a positive number, got {ratio}", "e.g. --growth-ratio 0.9 (the paper's VGG-19 value)")
    return Budget("neurons", sum(spec.widths) + round(ratio * sum(spec.widths)))


class _CostModel:
    """Per-layer coefficients of one (family, input size, classes) so a cost is a few numpy ops on widths."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        table = layer_table(spec)
        spatial = _spatial_sizes(spec.family, spec.input_size, spec.in_channels, spec.num_classes, len(spec.widths))
        self.layers = [(layer, spatial.get(layer.name, 1)) for layer in table]

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _cached(family: str, n: int, classes: int, size: int, c_in: int) -> "_CostModel":
        return _CostModel(ModelSpec(family, (1,) * n, classes, size, c_in))

    @classmethod
    def of(cls, spec: ModelSpec) -> "_CostModel":
        return cls._cached(spec.family, len(spec.widths), spec.num_classes, spec.input_size, spec.in_channels)

    def cost(self, widths: np.ndarray, budget: Budget) -> float:
        if budget.kind == "neurons":
            return float(widths.sum())
        spec = self.spec

        def w(group: Optional[int], fixed: int) -> float:
            return fixed if group is None else float(widths[group])

        params = deployed = act = 0.0
        b = PRECISION_BYTES.get(budget.precision, 4)
        bias_b = 2 if budget.precision == "fp16" else 4
        for layer, hw in self.layers:
            c_in, c_out = w(layer.in_group, spec.in_channels), w(layer.out_group, spec.num_classes)
            k2 = layer.kernel**2
            if layer.kind == "bn":
                params += 2 * c_out
                act += c_out * hw
                continue
            weights = c_out * k2 if layer.kind == "dwconv" else c_out * c_in * k2
            params += weights + (c_out if layer.bias else 0)
            deployed += weights * b + c_out * bias_b + (c_out * 4 if budget.precision == "int8" else 0)
            act += c_in if layer.kind == "linear" else c_out * hw
        if budget.kind == "params":
            return params
        if budget.kind == "bytes":
            return deployed
        if budget.kind == "train":
            image = spec.in_channels * spec.input_size**2
            return 4 * (3 * params + budget.batch * (act + image))
        raise BudgetError(f"unknown budget kind '{budget.kind}'")


@functools.lru_cache(maxsize=64)
def _spatial_sizes(family: str, size: int, c_in: int, classes: int, n: int) -> dict[str, int]:
    """H*W of each conv/bn layer's output, from one forward pass on the meta device (no memory, no compute)."""
    import torch

    from gear_trt.models import build_model

    spec = ModelSpec(family, (4,) * n, classes, size, c_in)
    with torch.device("meta"):
        model = build_model(spec)
    sizes: dict[str, int] = {}
    hooks = [
        mod.register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, int(o.shape[-1] * o.shape[-2])))
        for name, mod in model.named_modules()
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.BatchNorm2d))
    ]
    model(torch.empty(1, c_in, size, size, device="meta"))
    for h in hooks:
        h.remove()
    return sizes

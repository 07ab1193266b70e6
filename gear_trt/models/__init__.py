"""Model families as data: `build_model(spec)` is pure, `layer_table(spec)` describes its channel graph.

Exact parameter counts come from the layer table alone (no module is built), so budgets can be
checked thousands of times during growth.
"""

from __future__ import annotations

import dataclasses
import os
from types import ModuleType
from typing import Any, Callable, Union

import torch
from torch import nn

from gear_trt.artifacts.checkpoint import checkpoint_spec, load_checkpoint
from gear_trt.errors import ArtifactError, ConfigError
from gear_trt.models import mobilenet, resnet, vgg
from gear_trt.models.graph import LayerInfo
from gear_trt.spec import FAMILIES, ModelSpec

# The paper's backbones are about 1.4% of the full model's parameters (GEARNN.md).
BACKBONE_FRACTION = 0.014


@dataclasses.dataclass(frozen=True)
class Family:
    module: ModuleType
    builder: Callable[[ModelSpec], nn.Module]

    @property
    def full_widths(self) -> tuple[int, ...]:
        return self.module.FULL_WIDTHS

    @property
    def group_names(self) -> tuple[str, ...]:
        return self.module.GROUP_NAMES


REGISTRY: dict[str, Family] = {
    "vgg19": Family(vgg, vgg.VGG),
    "mobilenet_v1": Family(mobilenet, mobilenet.MobileNetV1),
    "resnet18": Family(resnet, resnet.ResNet18),
}
assert tuple(REGISTRY) == FAMILIES


def family(name: str) -> Family:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model family '{name}'", f"choose one of {', '.join(REGISTRY)}") from None


def _check_widths(spec: ModelSpec) -> None:
    n = len(family(spec.family).full_widths)
    if len(spec.widths) != n:
        raise ConfigError(f"{spec.family} has {n} width groups, the spec gives {len(spec.widths)}")


def build_model(spec: ModelSpec) -> nn.Module:
    _check_widths(spec)
    return family(spec.family).builder(spec)


def load_model(path: Union[str, "os.PathLike[str]"], *, map_location: Union[str, torch.device] = "cpu") -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """Build a checkpoint's model from its spec and load its weights. Returns (model in eval mode, spec, payload)."""
    payload = load_checkpoint(path, map_location=map_location)
    spec = checkpoint_spec(payload, path)
    model = build_model(spec)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ArtifactError(f"{path}: weights do not match its spec ({first[:160]})", "re-run the stage that wrote it") from None
    return model.eval(), spec, payload


def layer_table(spec: ModelSpec) -> list[LayerInfo]:
    _check_widths(spec)
    return family(spec.family).module.layer_table(spec)


def group_names(spec: ModelSpec) -> tuple[str, ...]:
    return family(spec.family).group_names


def scaled_spec(name: str, multiplier: float, num_classes: int = 10, input_size: int = 32) -> ModelSpec:
    widths = tuple(max(1, round(w * multiplier)) for w in family(name).full_widths)
    return ModelSpec(name, widths, num_classes=num_classes, input_size=input_size)


def full_spec(name: str, num_classes: int = 10, input_size: int = 32) -> ModelSpec:
    return scaled_spec(name, 1.0, num_classes, input_size)


def backbone_spec(name: str, num_classes: int = 10, input_size: int = 32, fraction: float = BACKBONE_FRACTION) -> ModelSpec:
    """The uniform width multiplier whose model has about `fraction` of the full model's parameters."""
    target = fraction * count_params(full_spec(name, num_classes, input_size))
    _, hi = width_multiplier_bracket(name, lambda spec: count_params(spec) < target, num_classes, input_size)
    return scaled_spec(name, hi, num_classes, input_size)


def width_multiplier_bracket(name: str, below: Callable[[ModelSpec], bool], num_classes: int = 10, input_size: int = 32,
                             *, beyond_full: bool = False) -> tuple[float, float]:
    """(lo, hi): the uniform width multipliers either side of where `below(scaled_spec)` turns False.

    `below` must be monotone (True for small models, False for large ones), as parameters, deployed
    bytes and training memory all are. The search runs on [0, 1] (the full model), or upwards past it
    with `beyond_full`; 40 halvings leave lo and hi adjacent in width.
    """
    lo, hi = 0.0, 1.0
    while beyond_full and below(scaled_spec(name, hi, num_classes, input_size)):
        hi *= 2
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if below(scaled_spec(name, mid, num_classes, input_size)) else (lo, mid)
    return lo, hi


def _width(spec: ModelSpec, group: int | None, fixed: int) -> int:
    return fixed if group is None else spec.widths[group]


def layer_params(spec: ModelSpec, layer: LayerInfo) -> tuple[int, int]:
    """(weight elements of conv/linear kernels, per-channel elements: biases and BN affine) of one layer."""
    c_in = _width(spec, layer.in_group, spec.in_channels)
    c_out = _width(spec, layer.out_group, spec.num_classes)
    k2 = layer.kernel * layer.kernel
    if layer.kind == "bn":
        return 0, 2 * c_out
    if layer.kind == "dwconv":
        return c_out * k2, (c_out if layer.bias else 0)
    return c_out * c_in * k2, (c_out if layer.bias else 0)


def count_params(spec: ModelSpec) -> int:
    """Exact number of trainable parameters of build_model(spec)."""
    return sum(sum(layer_params(spec, layer)) for layer in layer_table(spec))


def params_by_group(spec: ModelSpec) -> tuple[list[int], int]:
    """(parameters of the layers writing each width group, parameters of the fixed-size layers: the classifier)."""
    per_group = [0] * len(spec.widths)
    fixed = 0
    for layer in layer_table(spec):
        n = sum(layer_params(spec, layer))
        if layer.out_group is None:
            fixed += n
        else:
            per_group[layer.out_group] += n
    return per_group, fixed

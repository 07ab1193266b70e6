"""VGG-19 with batch norm, CIFAR style (3x3 convs, 5 max-pools, global average pool, one linear).

One width group per conv layer (16 groups).
"""

from __future__ import annotations

from torch import nn

from gear_trt.models.graph import LayerInfo
from gear_trt.spec import ModelSpec

FULL_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
POOL_AFTER = {1, 3, 7, 11, 15}  # conv indices followed by a 2x2 max-pool
GROUP_NAMES = tuple(f"conv{i + 1}" for i in range(16))


class VGG(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = spec.in_channels
        for i, w in enumerate(spec.widths):
            layers += [nn.Conv2d(c_in, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i in POOL_AFTER:
                layers.append(nn.MaxPool2d(2))
            c_in = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, spec.num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def layer_table(spec: ModelSpec) -> list[LayerInfo]:
    table: list[LayerInfo] = []
    idx, prev = 0, None
    for i in range(len(spec.widths)):
        table.append(LayerInfo(f"features.{idx}", "conv", prev, i, kernel=3))
        table.append(LayerInfo(f"features.{idx + 1}", "bn", i, i))
        idx += 4 if i in POOL_AFTER else 3
        prev = i
    table.append(LayerInfo("classifier", "linear", prev, None, bias=True))
    return table

"""MobileNet-V1, CIFAR style (stride-1 stem, 13 depthwise-separable blocks, global average pool).

14 width groups: the stem and each block's pointwise conv. A block's depthwise conv reads and
writes the group of the layer before it, so it grows with that layer (tied channels).
"""

from __future__ import annotations

from torch import nn

from gear_trt.models.graph import LayerInfo
from gear_trt.spec import ModelSpec

FULL_WIDTHS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)  # depthwise stride of each of the 13 blocks
GROUP_NAMES = ("stem",) + tuple(f"block{i + 1}" for i in range(13))


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.pw = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn2(self.pw(self.relu(self.bn1(self.dw(x))))))


class MobileNetV1(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        w = spec.widths
        self.stem = nn.Sequential(nn.Conv2d(spec.in_channels, w[0], 3, padding=1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[Block(w[i], w[i + 1], s) for i, s in enumerate(STRIDES)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(w[-1], spec.num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.blocks(self.stem(x))).flatten(1))


def layer_table(spec: ModelSpec) -> list[LayerInfo]:
    table = [LayerInfo("stem.0", "conv", None, 0, kernel=3), LayerInfo("stem.1", "bn", 0, 0)]
    for i in range(13):
        p = f"blocks.{i}"
        table += [
            LayerInfo(f"{p}.dw", "dwconv", i, i, kernel=3),
            LayerInfo(f"{p}.bn1", "bn", i, i),
            LayerInfo(f"{p}.pw", "conv", i, i + 1),
            LayerInfo(f"{p}.bn2", "bn", i + 1, i + 1),
        ]
    table.append(LayerInfo("classifier", "linear", 13, None, bias=True))
    return table

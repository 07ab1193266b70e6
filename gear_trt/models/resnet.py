"""ResNet-18, CIFAR style (3x3 stride-1 stem, no max-pool, 4 stages of 2 basic blocks).

12 width groups: the residual stream of each stage (the stem, every block's second conv and the
projection shortcut write into it and must stay equal: tied), and the inner width of each block.
Group order: stage1, layer1.0, layer1.1, stage2, layer2.0, layer2.1, ... stage4, layer4.1.
"""

from __future__ import annotations

from torch import nn

from gear_trt.models.graph import LayerInfo
from gear_trt.spec import ModelSpec

FULL_WIDTHS = (64, 64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512)
GROUP_NAMES = tuple(n for s in range(1, 5) for n in (f"stage{s}", f"layer{s}.0", f"layer{s}.1"))


def _stream(stage: int) -> int:
    return 3 * stage


def _inner(stage: int, block: int) -> int:
    return 3 * stage + 1 + block


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, inner: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, inner, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def _needs_projection(stage: int, block: int) -> bool:
    # Stage 1 keeps its resolution and its (tied) stream width: identity shortcuts only.
    return stage > 0 and block == 0


class ResNet18(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        w = spec.widths
        self.stem = nn.Sequential(nn.Conv2d(spec.in_channels, w[0], 3, padding=1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True))
        c_in = w[0]
        for s in range(4):
            blocks = []
            for b in range(2):
                stride = 2 if _needs_projection(s, b) else 1
                blocks.append(BasicBlock(c_in, w[_inner(s, b)], w[_stream(s)], stride))
                c_in = w[_stream(s)]
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, spec.num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.classifier(self.pool(x).flatten(1))


def layer_table(spec: ModelSpec) -> list[LayerInfo]:
    table = [LayerInfo("stem.0", "conv", None, 0, kernel=3), LayerInfo("stem.1", "bn", 0, 0)]
    prev = _stream(0)
    for s in range(4):
        for b in range(2):
            p, inner, out = f"layer{s + 1}.{b}", _inner(s, b), _stream(s)
            table += [
                LayerInfo(f"{p}.conv1", "conv", prev, inner, kernel=3),
                LayerInfo(f"{p}.bn1", "bn", inner, inner),
                LayerInfo(f"{p}.conv2", "conv", inner, out, kernel=3),
                LayerInfo(f"{p}.bn2", "bn", out, out),
            ]
            if _needs_projection(s, b):
                table += [LayerInfo(f"{p}.shortcut.0", "conv", prev, out), LayerInfo(f"{p}.shortcut.1", "bn", out, out)]
            prev = out
    table.append(LayerInfo("classifier", "linear", prev, None, bias=True))
    return table

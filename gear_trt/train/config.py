"""TrainConfig: one training stage's optimisation settings, as data (stdlib only: the CLI reads its defaults)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Union

from gear_trt.errors import ConfigError
from gear_trt.train.schedule import check_schedule

AMP_MODES = ("auto", "off", "fp16", "bf16")  # auto: fp16 on CUDA, off on the CPU
CHANNELS_LAST_MODES = ("auto", "on", "off")  # auto: on CUDA only


def amp_mode(value: Union[bool, str]) -> str:
    """The AMP setting spelled as one of AMP_MODES (True is "auto", False is "off")."""
    if isinstance(value, bool):
        return "auto" if value else "off"
    if value not in AMP_MODES:
        raise ConfigError(f"unknown AMP mode {value!r}", f"use one of {', '.join(AMP_MODES)}")
    return value


def channels_last_mode(value: Union[bool, str]) -> str:
    """The channels_last setting spelled as one of CHANNELS_LAST_MODES (True is "auto", False is "off")."""
    if isinstance(value, bool):
        return "auto" if value else "off"
    if value not in CHANNELS_LAST_MODES:
        raise ConfigError(f"unknown channels_last mode {value!r}", f"use one of {', '.join(CHANNELS_LAST_MODES)}")
    return value


@dataclasses.dataclass
class TrainConfig:
    epochs: int
    batch_size: int = 128
    lr: float = 0.1  # used as given (not rescaled with the batch size)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # on every parameter, BN and biases included (the usual CIFAR recipe)
    schedule: str = "cosine"  # cosine | step | constant
    milestones: tuple[float, ...] = (0.5, 0.75)  # step schedule: fractions of `epochs`
    gamma: float = 0.1  # step schedule: lr multiplier at each milestone
    warmup_epochs: float = 0.0
    # cosine: the part (a, b) of one cosine this run covers, for stages that share a schedule (0, 1: all of it)
    cosine_span: tuple[float, float] = (0.0, 1.0)
    label_smoothing: float = 0.0
    # the first stage after growth: epochs over which the added neurons' gradient ramps from 0 to 1 (0: off)
    new_neuron_warmup: float = 0.0
    # decay per step of an exponential moving average of the weights, which is then what is evaluated and saved (0: off)
    ema: float = 0.0
    # Mixed precision: True/"auto" = fp16 + GradScaler on CUDA, fp32 on the CPU; False/"off"; "fp16"
    # (autocast + GradScaler) or "bf16" (autocast, no scaler) on any device. See AMP_MODES.
    amp: Union[bool, str] = True
    channels_last: Union[bool, str] = True  # True/"auto" = on CUDA only; "on" anywhere; False/"off"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        self.milestones = tuple(float(m) for m in self.milestones)
        self.cosine_span = (float(self.cosine_span[0]), float(self.cosine_span[1]))

    def validate(self) -> "TrainConfig":
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}", "pass --epochs 1 or more")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}", "pass --batch-size 1 or more")
        if not all(math.isfinite(v) for v in (self.lr, self.momentum, self.weight_decay, self.warmup_epochs, self.label_smoothing,
                                              self.new_neuron_warmup, self.ema)):
            raise ConfigError("training options must be finite numbers (not nan or inf)", "pass e.g. --lr 0.1 --momentum 0.9 --weight-decay 5e-4")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be > 0, got {self.lr}", "pass e.g. --lr 0.1")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}", "pass e.g. --momentum 0.9")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("nesterov needs momentum > 0", "pass --momentum 0.9 or --no-nesterov")
        if self.weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {self.weight_decay}", "pass e.g. --weight-decay 5e-4")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}", "pass e.g. --label-smoothing 0.1")
        if self.new_neuron_warmup < 0:
            raise ConfigError(f"new-neuron warmup must be >= 0 epochs, got {self.new_neuron_warmup}", "pass e.g. --new-neuron-warmup 2")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"EMA decay must be in [0, 1), got {self.ema}", "pass e.g. --ema 0.999, or 0 for none")
        check_schedule(self.schedule, self.milestones, self.warmup_epochs, self.epochs)
        if not 0.0 <= self.cosine_span[0] < self.cosine_span[1] <= 1.0:
            raise ConfigError(f"cosine_span must be 0 <= a < b <= 1, got {list(self.cosine_span)}", "e.g. (0.0, 1.0): the whole cosine")
        amp_mode(self.amp)
        channels_last_mode(self.channels_last)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        if self.cosine_span == (0.0, 1.0):
            del d["cosine_span"]  # the default is left out: checkpoints and manifests from before it compare equal
        else:
            d["cosine_span"] = list(self.cosine_span)
        for key in ("new_neuron_warmup", "ema"):
            if not d[key]:
                del d[key]  # likewise
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown training options {sorted(unknown)}", f"use only {', '.join(sorted(known))}")
        return cls(**d)

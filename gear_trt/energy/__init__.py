"""Energy meters behind one interface, chosen automatically.

    meter = auto_meter()                 # NVML -> jtop -> INA3221 sysfs -> none
    manifest["energy_meter"] = meter.info()
    with meter.measure() as m:
        train_stage()
    stage["energy_j"] = m.reading.joules  # None where no meter exists (time is still in m.reading.seconds)
    joules_per_image = m.reading.per_item(n_images)

Importing this package is cheap: pynvml and jtop load only when their meter is built.
"""

from __future__ import annotations

import os
import time

from gear_trt.energy.base import (
    NO_METER_SOURCE,
    Clock,
    EnergyMeter,
    Measurement,
    NullMeter,
    PollingMeter,
    Reading,
    integrate_trapezoid,
)
from gear_trt.errors import BackendUnavailable, ConfigError

__all__ = [
    "METER_CHOICES", "NO_METER_SOURCE", "EnergyMeter", "Measurement", "NullMeter", "PollingMeter", "Reading",
    "auto_meter", "integrate_trapezoid", "make_meter", "measure_idle_watts",
]

# the order auto_meter tries; also the CLI's --energy choices (plus "auto")
AUTO_ORDER = ("nvml", "jtop", "ina3221")
METER_CHOICES = ("auto", *AUTO_ORDER, "none")


def make_meter(kind: str, *, cuda_device: int = 0, root: str | os.PathLike = "/", interval_s: float | None = None,
               clock: Clock = time.perf_counter) -> EnergyMeter:
    """Build one named meter; raises BackendUnavailable (with the fix) when it cannot work here."""
    if kind == "nvml":
        from gear_trt.energy.nvml import NvmlMeter

        return NvmlMeter(cuda_device, interval_s=0.1 if interval_s is None else interval_s, clock=clock)
    if kind == "jtop":
        from gear_trt.energy.jetson import JtopMeter

        return JtopMeter(root, interval_s=interval_s or 0.5, clock=clock)
    if kind == "ina3221":
        from gear_trt.energy.jetson import Ina3221Meter

        return Ina3221Meter(root, interval_s=0.05 if interval_s is None else interval_s, clock=clock)
    if kind == "none":
        return NullMeter(clock=clock)
    raise ConfigError(f"unknown energy meter {kind!r}", f"choose one of {', '.join(METER_CHOICES)}")


def auto_meter(prefer: str = "auto", *, cuda_device: int = 0, root: str | os.PathLike = "/",
               interval_s: float | None = None, clock: Clock = time.perf_counter) -> EnergyMeter:
    """The best meter this machine has: NVML, then jtop, then the INA3221 sysfs, else NullMeter
    (time only; its info() says why each meter was skipped). `prefer` other than "auto" asks for
    one meter and fails loudly if it is unavailable, rather than silently measuring something else."""
    if prefer != "auto":
        return make_meter(prefer, cuda_device=cuda_device, root=root, interval_s=interval_s, clock=clock)
    skipped: dict[str, str] = {}
    for kind in AUTO_ORDER:
        try:
            return make_meter(kind, cuda_device=cuda_device, root=root, interval_s=interval_s, clock=clock)
        except BackendUnavailable as exc:
            skipped[kind] = exc.message
    return NullMeter(skipped, clock=clock)


def measure_idle_watts(meter: EnergyMeter, seconds: float = 2.0) -> float | None:
    """Mean power while doing nothing for `seconds`: the baseline to take off (Reading.minus_idle)."""
    with meter.measure() as m:
        time.sleep(seconds)
    assert m.reading is not None
    return m.reading.mean_watts


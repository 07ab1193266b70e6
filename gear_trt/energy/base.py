"""The meter interface: start() / stop() -> Reading, or `with meter.measure() as m: ...`.

Two ways to get joules: a hardware energy counter read twice (NVML), or a power reading polled
on a background thread and integrated over time with the trapezoid rule (Jetson rails, NVML on
GPUs without the counter). Both share this base so callers never care which one they got.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

Clock = Callable[[], float]

NO_METER_SOURCE = "none: no energy counter on this machine"


@dataclass(frozen=True)
class Reading:
    """Energy of one measured window. `joules` and `mean_watts` are None when nothing was measured."""

    joules: float | None
    seconds: float
    mean_watts: float | None
    source: str
    details: dict[str, Any] = field(default_factory=dict)

    def per_item(self, count: int) -> float | None:
        """Joules per item (per inference, per image), or None when no energy was measured."""
        if self.joules is None or count <= 0:
            return None
        return self.joules / count

    def minus_idle(self, idle_watts: float) -> Reading:
        """The same window with an idle baseline (watts x seconds) taken off: the work's own energy."""
        if self.joules is None:
            return self
        joules = self.joules - idle_watts * self.seconds
        details = {**self.details, "idle_watts_subtracted": idle_watts}
        return Reading(joules, self.seconds, joules / self.seconds if self.seconds > 0 else None, self.source, details)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Measurement:
    """What `EnergyMeter.measure()` yields; `reading` is filled in when the block exits."""

    reading: Reading | None = None


class EnergyMeter(ABC):
    """Measure the energy of a window of work. Reusable: start/stop any number of times."""

    kind = "abstract"  # short machine name: "nvml", "jtop", "ina3221", "none"

    def __init__(self, *, clock: Clock = time.perf_counter) -> None:
        self._clock = clock
        self._t0: float | None = None

    @property
    @abstractmethod
    def source(self) -> str:
        """One human-readable line: what is measured, where (goes in the manifest and the report)."""

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _end(self) -> tuple[float | None, dict[str, Any]]:
        """Joules since `_begin` (None if unknown) and details worth recording."""

    def info(self) -> dict[str, Any]:
        """What the manifest records about this meter (source, device, power mode, clocks...)."""
        return {"kind": self.kind, "source": self.source}

    def start(self) -> None:
        if self._t0 is not None:
            raise RuntimeError("energy meter already started; call stop() first")
        self._t0 = self._clock()
        self._begin()

    def stop(self) -> Reading:
        if self._t0 is None:
            raise RuntimeError("energy meter stop() without start()")
        joules, details = self._end()
        seconds = self._clock() - self._t0
        self._t0 = None
        mean = joules / seconds if joules is not None and seconds > 0 else None
        return Reading(joules, seconds, mean, self.source, {"meter": self.kind, **details})

    @contextmanager
    def measure(self) -> Iterator[Measurement]:
        """`with meter.measure() as m: work()` then `m.reading`. Stops even if the work raises."""
        m = Measurement()
        self.start()
        try:
            yield m
        finally:
            m.reading = self.stop()

    def close(self) -> None:
        """Release the meter's resources (NVML handle, jtop connection). Safe to call twice."""


class NullMeter(EnergyMeter):
    """No energy counter here: times only. `skipped` says why each real meter was not used."""

    kind = "none"

    def __init__(self, skipped: dict[str, str] | None = None, *, clock: Clock = time.perf_counter) -> None:
        super().__init__(clock=clock)
        self.skipped = dict(skipped or {})

    @property
    def source(self) -> str:
        return NO_METER_SOURCE

    def info(self) -> dict[str, Any]:
        return {**super().info(), "skipped": self.skipped}

    def _begin(self) -> None:
        pass

    def _end(self) -> tuple[float | None, dict[str, Any]]:
        return None, {}


def integrate_trapezoid(samples: Sequence[tuple[float, float]]) -> float:
    """Joules from (time s, power W) samples: the trapezoid rule, exact for piecewise-linear power."""
    pts = sorted(samples)
    return sum((t1 - t0) * (w0 + w1) / 2.0 for (t0, w0), (t1, w1) in zip(pts, pts[1:]))


class PollingMeter(EnergyMeter):
    """Integrates an instantaneous power reading, sampled at start, every `interval_s` on a
    daemon thread, and at stop. `interval_s=None` samples only at start/stop and on `sample()`."""

    def __init__(self, *, interval_s: float | None = 0.05, clock: Clock = time.perf_counter) -> None:
        super().__init__(clock=clock)
        self.interval_s = interval_s
        self._samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[str] = []

    @abstractmethod
    def read_watts(self) -> float:
        """Instantaneous total power in watts."""

    def sample(self) -> None:
        """Take one (time, power) sample now; a failed read is counted, not raised, mid-run."""
        try:
            t, w = self._clock(), self.read_watts()
        except (OSError, ValueError) as exc:
            with self._lock:
                self._errors.append(str(exc))
            return
        with self._lock:
            self._samples.append((t, w))

    def _poll(self) -> None:
        assert self.interval_s is not None
        while not self._stop_event.wait(self.interval_s):
            self.sample()

    def _begin(self) -> None:
        with self._lock:
            self._samples, self._errors = [], []
        self._samples.append((self._clock(), self.read_watts()))  # a dead sensor fails loudly here
        if self.interval_s:
            self._stop_event.clear()
            self._thread = threading.Thread(target=self._poll, name=f"gear-trt-{self.kind}-meter", daemon=True)
            self._thread.start()

    def _end(self) -> tuple[float | None, dict[str, Any]]:
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()
            self._thread = None
        self.sample()
        with self._lock:
            samples, errors = list(self._samples), list(self._errors)
        watts = [w for _, w in samples]
        details: dict[str, Any] = {
            "samples": len(samples),
            "interval_s": self.interval_s,
            "min_watts": min(watts),
            "max_watts": max(watts),
        }
        if errors:
            details["read_errors"] = len(errors)
            details["last_read_error"] = errors[-1]
        return (integrate_trapezoid(samples) if len(samples) >= 2 else 0.0), details

    def close(self) -> None:
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()
            self._thread = None

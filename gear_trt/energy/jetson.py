"""Jetson energy: jetson-stats (jtop) when its service runs, else the INA3221 power monitors in sysfs.

The INA3221 rails are module-level: VDD_IN (Orin NX/Nano, Xavier NX) or POM_5V_IN (Nano, TX2) is the
module's total input power, the figure to integrate. Boards without such a rail (AGX Orin, AGX
Xavier) get the sum of their named rails, which misses regulator losses; the source says so.
Sysfs layouts (read the kernel's hwmon/ina3221 doc for units):
  JetPack 5+ hwmon: /sys/bus/i2c/devices/<bus-addr>/hwmon/hwmonN/inX_label, inX_input (mV), currX_input (mA)
  JetPack 4 iio:    /sys/bus/i2c/devices/<bus-addr>/iio:deviceN/rail_name_N, in_power{N}_input (mW)
Every path is under `root`, so tests point the meter at a recorded tree.
The sensor averages over its conversion window (tens of ms): measure windows of several seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gear_trt._deps import optional_import
from gear_trt.energy.base import Clock, PollingMeter
from gear_trt.errors import BackendUnavailable

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # the module's total input, newest naming first
JTOP_SOCKET = "run/jtop.sock"  # relative to root
_GPU_DEVFREQ = ("gpu", "ga10b", "gv11b", "gp10b", "gm20b", "gb10b")


def _read(path: Path) -> str:
    return path.read_text().strip()


def _read_number(path: Path) -> float:
    # some attributes carry a unit suffix ("32760 ma"); the number comes first
    return float(_read(path).split()[0])


@dataclass(frozen=True)
class Rail:
    """One INA3221 channel: either a power file (mW, JP4 iio) or voltage (mV) and current (mA) files."""

    name: str
    layout: str  # "hwmon" or "iio"
    power_mw: Path | None = None
    voltage_mv: Path | None = None
    current_ma: Path | None = None

    def watts(self) -> float:
        if self.power_mw is not None:
            return _read_number(self.power_mw) / 1000.0
        assert self.voltage_mv is not None and self.current_ma is not None
        return _read_number(self.voltage_mv) * _read_number(self.current_ma) / 1e6


def _is_ina3221(device: Path) -> bool:
    names = [device / "name", *device.glob("hwmon/hwmon*/name"), *device.glob("iio:device*/name")]
    return any(p.is_file() and "ina3221" in _read(p).lower() for p in names)


def _skip_label(label: str, channel: int) -> bool:
    # "NC" = not connected (Orin); channel 7 = "sum of shunt voltages", not a rail
    return not label or label.upper() == "NC" or channel == 7 or "sum of shunt" in label.lower()


def _hwmon_rails(folder: Path) -> list[Rail]:
    rails = []
    for label_file in sorted(folder.glob("in*_label")):
        m = re.fullmatch(r"in(\d+)_label", label_file.name)
        if not m:
            continue
        ch, label = int(m.group(1)), _read(label_file)
        volt, curr = folder / f"in{ch}_input", folder / f"curr{ch}_input"
        if _skip_label(label, ch) or not (volt.is_file() and curr.is_file()):
            continue
        rails.append(Rail(label, "hwmon", voltage_mv=volt, current_ma=curr))
    return rails


def _iio_rails(folder: Path) -> list[Rail]:
    rails = []
    for label_file in sorted(folder.glob("rail_name_*")):
        m = re.fullmatch(r"rail_name_(\d+)", label_file.name)
        if not m:
            continue
        ch, label = int(m.group(1)), _read(label_file)
        power = folder / f"in_power{ch}_input"
        volt, curr = folder / f"in_voltage{ch}_input", folder / f"in_current{ch}_input"
        if _skip_label(label, -1):
            continue
        if power.is_file():
            rails.append(Rail(label, "iio", power_mw=power))
        elif volt.is_file() and curr.is_file():
            rails.append(Rail(label, "iio", voltage_mv=volt, current_ma=curr))
    return rails


def find_ina3221_rails(root: str | os.PathLike = "/") -> dict[str, Rail]:
    """Every named INA3221 rail under root/sys/bus/i2c/devices, by rail name."""
    base = Path(root) / "sys/bus/i2c/devices"
    rails: dict[str, Rail] = {}
    if not base.is_dir():
        return rails
    for device in sorted(base.iterdir()):
        if not device.is_dir() or not _is_ina3221(device):
            continue
        found = [r for f in sorted(device.glob("hwmon/hwmon*")) for r in _hwmon_rails(f)]
        found += [r for f in sorted(device.glob("iio:device*")) for r in _iio_rails(f)]
        for rail in found:
            name = rail.name if rail.name not in rails else f"{rail.name}@{device.name}"
            rails[name] = Rail(name, rail.layout, rail.power_mw, rail.voltage_mv, rail.current_ma)
    return rails


def parse_nvpmodel_query(text: str) -> dict[str, Any]:
    """`nvpmodel -q` output ("NV Power Mode: MODE_15W_6CORE" then the id) -> {"name", "id"}."""
    m = re.search(r"NV Power Mode:[ \t]*(\S+)[ \t]*(?:\r?\n\s*(\d+)\b)?", text)
    if not m:
        return {}
    out: dict[str, Any] = {"name": m.group(1)}
    if m.group(2) is not None:
        out["id"] = int(m.group(2))
    return out


def power_mode() -> dict[str, Any]:
    """The active nvpmodel mode via `nvpmodel -q`, or {"error": why} where it cannot be read."""
    exe = shutil.which("nvpmodel")
    if exe is None:
        return {"error": "nvpmodel not found"}
    try:
        proc = subprocess.run([exe, "-q"], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"nvpmodel -q failed: {exc}"}
    parsed = parse_nvpmodel_query(proc.stdout + "\n" + proc.stderr)
    return parsed or {"error": f"unrecognised nvpmodel -q output: {(proc.stdout + proc.stderr).strip()[:200]}"}


def _freqs(folder: Path, names: tuple[str, str, str]) -> dict[str, int] | None:
    paths = [folder / n for n in names]
    if not all(p.is_file() for p in paths):
        return None
    try:
        cur, lo, hi = (int(_read_number(p)) for p in paths)
    except (OSError, ValueError):
        return None
    return {"cur": cur, "min": lo, "max": hi}


def clock_state(root: str | os.PathLike = "/") -> dict[str, Any]:
    """CPU and GPU frequencies from sysfs and whether they look locked (min == max, what
    jetson_clocks does). `clocks_locked` is None when no frequency could be read."""
    root = Path(root)
    clocks: dict[str, dict[str, int]] = {}
    for cpu in sorted(root.glob("sys/devices/system/cpu/cpu[0-9]*/cpufreq")):
        f = _freqs(cpu, ("scaling_cur_freq", "scaling_min_freq", "scaling_max_freq"))
        if f:
            clocks[cpu.parent.name] = f  # kHz
    for dev in sorted(root.glob("sys/class/devfreq/*")):
        if any(k in dev.name.lower() for k in _GPU_DEVFREQ):
            f = _freqs(dev, ("cur_freq", "min_freq", "max_freq"))
            if f:
                clocks[f"gpu:{dev.name}"] = f  # Hz
    locked = all(f["min"] == f["max"] for f in clocks.values()) if clocks else None
    return {"clocks_locked": locked, "clocks": clocks}


class Ina3221Meter(PollingMeter):
    """Module energy from the INA3221 rails in sysfs: total input rail (or the sum of rails), polled."""

    kind = "ina3221"

    def __init__(self, root: str | os.PathLike = "/", *, rail: str | None = None, interval_s: float | None = 0.05,
                 clock: Clock = time.perf_counter) -> None:
        super().__init__(interval_s=interval_s, clock=clock)
        self.root = Path(root)
        self.rails = find_ina3221_rails(self.root)
        if not self.rails:
            raise BackendUnavailable(f"no INA3221 power monitor under {self.root / 'sys/bus/i2c/devices'}",
                                     "on a Jetson, check that the ina3221 driver is loaded; elsewhere choose another energy meter")
        if rail is not None:
            if rail not in self.rails:
                raise BackendUnavailable(f"no INA3221 rail named {rail!r}; found {sorted(self.rails)}", "pick one of the listed rails")
            self.measured = [self.rails[rail]]
        else:
            total = next((self.rails[n] for n in TOTAL_RAILS if n in self.rails), None)
            self.measured = [total] if total else list(self.rails.values())
        self.read_watts()  # a sensor we cannot read fails here, not mid-run

    @property
    def is_total(self) -> bool:
        return len(self.measured) == 1 and self.measured[0].name in TOTAL_RAILS

    @property
    def source(self) -> str:
        layout = self.measured[0].layout
        if len(self.measured) == 1:
            what = f"rail {self.measured[0].name}" + (" (module total input)" if self.is_total else "")
        else:
            what = "sum of rails " + "+".join(r.name for r in self.measured) + " (no total-input rail; excludes regulator losses)"
        return f"ina3221 ({layout} sysfs): {what}"

    def info(self) -> dict[str, Any]:
        return {**super().info(), "rails": sorted(self.rails), "measured": [r.name for r in self.measured],
                "scope": "module input" if self.is_total else "sum of rails",
                "power_mode": power_mode() if self.root == Path("/") else {"error": "not queried (test root)"},
                **clock_state(self.root)}

    def read_watts(self) -> float:
        return sum(r.watts() for r in self.measured)


class JtopMeter(PollingMeter):
    """Module energy from jetson-stats' total power (`jtop().power["tot"]`), polled at its interval."""

    kind = "jtop"

    def __init__(self, root: str | os.PathLike = "/", *, interval_s: float = 0.5, clock: Clock = time.perf_counter) -> None:
        super().__init__(interval_s=interval_s, clock=clock)
        socket = Path(root) / JTOP_SOCKET
        module = optional_import("jtop")
        if not socket.exists():
            raise BackendUnavailable(f"the jtop service is not running (no {socket})",
                                     "`sudo systemctl restart jtop.service` (in Docker mount /run/jtop.sock), or use the INA3221 sysfs meter")
        self._jetson: Any = module.jtop(interval=interval_s)
        try:
            self._jetson.start()
            self.read_watts()
        except Exception as exc:
            self.close()
            raise BackendUnavailable(f"jtop did not deliver power readings: {exc}", "check `jtop` runs, or use the INA3221 sysfs meter") from exc

    @property
    def source(self) -> str:
        name = (self._jetson.power.get("tot", {}) if self._jetson is not None else {}).get("name", "sum of rails")
        return f"jtop: total power ({name})"

    def info(self) -> dict[str, Any]:
        out = super().info()
        if self._jetson is not None:
            nvp = getattr(self._jetson, "nvpmodel", None)
            out["power_mode"] = {"name": str(getattr(nvp, "name", nvp)), "id": getattr(nvp, "id", None)}
            jc = getattr(self._jetson, "jetson_clocks", None)
            out["jetson_clocks"] = None if jc is None else bool(jc)
        return out

    def read_watts(self) -> float:
        tot = self._jetson.power.get("tot")
        if not tot or "power" not in tot:
            raise ValueError("jtop reported no total power")
        return float(tot["power"]) / 1000.0  # mW

    def close(self) -> None:
        super().close()
        jetson, self._jetson = getattr(self, "_jetson", None), None
        if jetson is not None:
            try:
                jetson.close()
            except Exception:
                pass

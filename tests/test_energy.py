"""Energy meters: parsing of recorded sysfs trees and fake NVML/jtop readings, integration, auto choice."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

from gear_trt._deps import has_module
from gear_trt.energy import NO_METER_SOURCE, NullMeter, Reading, auto_meter, integrate_trapezoid, make_meter
from gear_trt.energy.jetson import (
    Ina3221Meter,
    JtopMeter,
    clock_state,
    find_ina3221_rails,
    parse_nvpmodel_query,
)
from gear_trt.energy.nvml import NvmlMeter, nvml_index_for_cuda
from gear_trt.errors import BackendUnavailable, ConfigError


class ManualClock:
    """A clock the test moves by hand, so integrated energies are exact."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def make_hwmon_device(root: Path, bus_addr: str, hwmon: str, channels: dict[int, tuple[str, int, int]]) -> Path:
    """A JetPack 5+ INA3221: channel -> (label, bus mV, mA); adds the 'sum of shunt voltages' channel 7."""
    dev = root / "sys/bus/i2c/devices" / bus_addr
    _write(dev / "name", "ina3221")
    folder = dev / "hwmon" / hwmon
    _write(folder / "name", "ina3221")
    for ch, (label, mv, ma) in channels.items():
        _write(folder / f"in{ch}_label", label)
        _write(folder / f"in{ch}_input", str(mv))
        _write(folder / f"curr{ch}_input", str(ma))
        _write(folder / f"curr{ch}_max", "32760 ma")
    _write(folder / "in7_label", "sum of shunt voltages")
    _write(folder / "in7_input", "12")
    return folder


def orin_nx_tree(root: Path) -> Path:
    return make_hwmon_device(root, "1-0040", "hwmon3", {
        1: ("VDD_IN", 5000, 1200),           # 6.0 W total input
        2: ("VDD_CPU_GPU_CV", 5000, 400),    # 2.0 W
        3: ("VDD_SOC", 5000, 300),           # 1.5 W
    })


def agx_orin_tree(root: Path) -> None:
    make_hwmon_device(root, "1-0040", "hwmon1", {
        1: ("VDD_GPU_SOC", 5000, 1000), 2: ("VDD_CPU_CV", 5000, 600), 3: ("VIN_SYS_5V0", 5000, 200)})
    make_hwmon_device(root, "1-0041", "hwmon2", {
        1: ("NC", 0, 0), 2: ("VDDQ_VDD2_1V8AO", 5000, 100), 3: ("NC", 0, 0)})


def nano_jp4_tree(root: Path) -> Path:
    folder = root / "sys/bus/i2c/devices/6-0040/iio:device0"
    _write(folder / "name", "ina3221x")
    for ch, (name, mw) in enumerate([("POM_5V_IN", 3000), ("POM_5V_GPU", 800), ("POM_5V_CPU", 900)]):
        _write(folder / f"rail_name_{ch}", name)
        _write(folder / f"in_power{ch}_input", str(mw))
        _write(folder / f"in_voltage{ch}_input", "5000")
        _write(folder / f"in_current{ch}_input", str(mw // 5))
    return folder


# --------------------------------------------------------------------------- integration / base


def test_trapezoid_is_exact_for_piecewise_linear_power() -> None:
    assert integrate_trapezoid([(0.0, 2.0), (1.0, 2.0), (3.0, 2.0)]) == pytest.approx(6.0)
    assert integrate_trapezoid([(2.0, 6.0), (0.0, 2.0)]) == pytest.approx(8.0)  # order does not matter
    assert integrate_trapezoid([(0.0, 5.0)]) == 0.0


def test_reading_helpers() -> None:
    r = Reading(joules=120.0, seconds=10.0, mean_watts=12.0, source="x")
    assert r.per_item(40) == pytest.approx(3.0)
    net = r.minus_idle(2.0)
    assert net.joules == pytest.approx(100.0) and net.mean_watts == pytest.approx(10.0)
    assert net.details["idle_watts_subtracted"] == 2.0
    none = Reading(None, 1.0, None, NO_METER_SOURCE)
    assert none.per_item(10) is None and none.minus_idle(3.0).joules is None
    assert r.to_dict()["joules"] == 120.0


def test_null_meter_times_only_and_misuse_is_an_error() -> None:
    clock = ManualClock()
    meter = NullMeter({"nvml": "no pynvml"}, clock=clock)
    with meter.measure() as m:
        clock.t = 2.5
    assert m.reading == Reading(None, 2.5, None, NO_METER_SOURCE, {"meter": "none"})
    assert meter.info() == {"kind": "none", "source": NO_METER_SOURCE, "skipped": {"nvml": "no pynvml"}}
    with pytest.raises(RuntimeError):
        meter.stop()
    meter.start()
    with pytest.raises(RuntimeError):
        meter.start()


def test_measure_stops_the_meter_when_the_work_raises(tmp_path: Path) -> None:
    orin_nx_tree(tmp_path)
    meter = Ina3221Meter(tmp_path, interval_s=0.005)
    with pytest.raises(KeyError), meter.measure() as m:
        raise KeyError("boom")
    assert m.reading is not None and m.reading.joules is not None
    assert meter._thread is None  # polling thread joined
    meter.start()  # and reusable
    assert meter.stop().joules is not None


# --------------------------------------------------------------------------- INA3221 sysfs


def test_hwmon_discovery_uses_vdd_in_and_skips_sum_channel(tmp_path: Path) -> None:
    orin_nx_tree(tmp_path)
    rails = find_ina3221_rails(tmp_path)
    assert set(rails) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
    assert rails["VDD_SOC"].watts() == pytest.approx(1.5)
    meter = Ina3221Meter(tmp_path)
    assert meter.is_total and [r.name for r in meter.measured] == ["VDD_IN"]
    assert meter.read_watts() == pytest.approx(6.0)
    assert "VDD_IN" in meter.source and "module total input" in meter.source
    info = meter.info()
    assert info["kind"] == "ina3221" and info["scope"] == "module input"


def test_constant_power_with_polling_thread(tmp_path: Path) -> None:
    orin_nx_tree(tmp_path)
    meter = Ina3221Meter(tmp_path, interval_s=0.01)
    with meter.measure() as m:
        time.sleep(0.15)
    r = m.reading
    assert r is not None and r.details["samples"] >= 3
    # constant 6 W: energy = 6 W x the sampled span, which is the measured window to within a few ms
    assert r.joules == pytest.approx(6.0 * r.seconds, rel=0.05)
    assert r.mean_watts == pytest.approx(6.0, rel=0.05)
    assert r.details["min_watts"] == r.details["max_watts"] == pytest.approx(6.0)


def test_ramped_power_integrates_exactly(tmp_path: Path) -> None:
    folder = orin_nx_tree(tmp_path)
    clock = ManualClock()
    meter = Ina3221Meter(tmp_path, interval_s=None, clock=clock)

    def set_power(watts: float) -> None:  # VDD_IN at 5 V: I[mA] = P / 5 V * 1000
        (folder / "curr1_input").write_text(f"{watts / 5.0 * 1000:.0f}\n")

    set_power(5.0)
    meter.start()
    for t in range(1, 11):  # P(t) = 5 W + 1 W/s * t for 10 s -> 5*10 + 0.5*100 = 100 J
        clock.t = float(t)
        set_power(5.0 + t)
        if t < 10:
            meter.sample()
    r = meter.stop()
    assert r.joules == pytest.approx(100.0, abs=1e-9)
    assert r.seconds == 10.0 and r.mean_watts == pytest.approx(10.0)
    assert r.details["samples"] == 11 and r.details["min_watts"] == 5.0 and r.details["max_watts"] == 15.0


def test_read_error_mid_run_is_counted_not_raised(tmp_path: Path) -> None:
    folder = orin_nx_tree(tmp_path)
    clock = ManualClock()
    meter = Ina3221Meter(tmp_path, interval_s=None, clock=clock)
    meter.start()
    saved = (folder / "curr1_input").read_text()
    (folder / "curr1_input").unlink()
    clock.t = 1.0
    meter.sample()
    (folder / "curr1_input").write_text(saved)
    clock.t = 2.0
    r = meter.stop()
    assert r.details["read_errors"] == 1 and "curr1_input" in r.details["last_read_error"]
    assert r.joules == pytest.approx(12.0)  # 6 W over 2 s from the two good samples


def test_agx_orin_without_total_rail_sums_named_rails(tmp_path: Path) -> None:
    agx_orin_tree(tmp_path)
    meter = Ina3221Meter(tmp_path)
    assert {r.name for r in meter.measured} == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    assert meter.read_watts() == pytest.approx(5.0 + 3.0 + 1.0 + 0.5)
    assert not meter.is_total and "sum of rails" in meter.source
    assert meter.info()["scope"] == "sum of rails"


def test_jp4_iio_layout_reads_power_in_mw(tmp_path: Path) -> None:
    nano_jp4_tree(tmp_path)
    clock = ManualClock()
    meter = Ina3221Meter(tmp_path, interval_s=None, clock=clock)
    assert [r.name for r in meter.measured] == ["POM_5V_IN"] and meter.measured[0].layout == "iio"
    assert "iio" in meter.source
    meter.start()
    clock.t = 4.0
    assert meter.stop().joules == pytest.approx(12.0)  # 3 W for 4 s


def test_rail_choice_and_errors(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="no INA3221"):
        Ina3221Meter(tmp_path)
    orin_nx_tree(tmp_path)
    assert Ina3221Meter(tmp_path, rail="VDD_SOC").read_watts() == pytest.approx(1.5)
    with pytest.raises(BackendUnavailable, match="VDD_GPU"):
        Ina3221Meter(tmp_path, rail="VDD_GPU")


def test_parse_nvpmodel_query() -> None:
    assert parse_nvpmodel_query("NV Fan Mode:quiet\nNV Power Mode: MODE_15W_6CORE\n2\n") == {"name": "MODE_15W_6CORE", "id": 2}
    assert parse_nvpmodel_query("NV Power Mode: MAXN\n0") == {"name": "MAXN", "id": 0}
    assert parse_nvpmodel_query("NV Power Mode: MODE_10W") == {"name": "MODE_10W"}
    assert parse_nvpmodel_query("nvpmodel: permission denied") == {}


def test_clock_state_from_sysfs(tmp_path: Path) -> None:
    assert clock_state(tmp_path) == {"clocks_locked": None, "clocks": {}}
    for cpu in ("cpu0", "cpu1"):
        f = tmp_path / "sys/devices/system/cpu" / cpu / "cpufreq"
        for name, v in (("scaling_cur_freq", 1984000), ("scaling_min_freq", 1984000), ("scaling_max_freq", 1984000)):
            _write(f / name, str(v))
    gpu = tmp_path / "sys/class/devfreq/17000000.ga10b"
    for name, v in (("cur_freq", 918000000), ("min_freq", 918000000), ("max_freq", 918000000)):
        _write(gpu / name, str(v))
    _write(tmp_path / "sys/class/devfreq/15340000.vic/min_freq", "1")  # not a GPU: ignored
    state = clock_state(tmp_path)
    assert state["clocks_locked"] is True
    assert set(state["clocks"]) == {"cpu0", "cpu1", "gpu:17000000.ga10b"}
    _write(gpu / "min_freq", "306000000")  # DVFS free again: not locked
    assert clock_state(tmp_path)["clocks_locked"] is False


# --------------------------------------------------------------------------- NVML (fake pynvml)


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__({3: "Not Supported", 9: "Driver Not Loaded"}.get(value, str(value)))
        self.value = value


def fake_pynvml(energy_mj=None, power_mw=None, uuids=("GPU-aaaa",), init_error: int | None = None) -> types.ModuleType:
    """A pynvml stand-in: `energy_mj` is a list of counter values (or None = unsupported),
    `power_mw` a callable giving the current power."""
    m = types.ModuleType("pynvml")
    m.NVMLError = FakeNVMLError
    m.NVML_ERROR_NOT_SUPPORTED = 3
    m.calls = []

    def nvmlInit() -> None:
        if init_error is not None:
            raise FakeNVMLError(init_error)
        m.calls.append("init")

    def energy(handle: int) -> int:
        if energy_mj is None:
            raise FakeNVMLError(3)
        return energy_mj.pop(0)

    def power(handle: int) -> int:
        if power_mw is None:
            raise FakeNVMLError(3)
        return power_mw()

    m.nvmlInit = nvmlInit
    m.nvmlShutdown = lambda: m.calls.append("shutdown")
    m.nvmlDeviceGetCount = lambda: len(uuids)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetUUID = lambda h: uuids[h]
    m.nvmlDeviceGetName = lambda h: b"NVIDIA Fake GPU"  # old pynvml returns bytes
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetPowerUsage = power
    return m


@pytest.fixture
def no_torch_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CUDA->NVML mapping independent of whether this machine's torch sees a GPU."""
    monkeypatch.setattr("gear_trt.energy.nvml._cuda_uuid", lambda i: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)


def test_nvml_counter_delta(monkeypatch: pytest.MonkeyPatch, no_torch_cuda: None) -> None:
    fake = fake_pynvml(energy_mj=[1_000_000, 1_000_000, 1_012_500])  # probe, start, stop
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    clock = ManualClock()
    meter = NvmlMeter(0, clock=clock)
    assert meter.uses_counter and meter.device_name == "NVIDIA Fake GPU"
    with meter.measure() as m:
        clock.t = 0.05
    r = m.reading
    assert r is not None and r.joules == pytest.approx(12.5) and r.mean_watts == pytest.approx(250.0)
    assert r.details["counter_start_mj"] == 1_000_000 and r.details["counter_end_mj"] == 1_012_500
    assert "total-energy counter" in r.source and "GPU 0" in r.source
    info = meter.info()
    assert info["counter"] is True and info["nvml_index"] == 0 and "CUDA_DEVICE_ORDER" in info["index_mapping"]
    meter.close()
    meter.close()
    assert fake.calls == ["init", "shutdown"]


def test_nvml_without_counter_integrates_power(monkeypatch: pytest.MonkeyPatch, no_torch_cuda: None) -> None:
    clock = ManualClock()
    fake = fake_pynvml(energy_mj=None, power_mw=lambda: int(100_000 + 10_000 * clock.t))  # 100 W + 10 W/s
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = NvmlMeter(0, interval_s=None, clock=clock)
    assert not meter.uses_counter and "Not Supported" in meter.info()["counter_error"]
    meter.start()
    for t in (1.0, 2.0, 3.0, 4.0):
        clock.t = t
        if t < 4.0:
            meter.sample()
    r = meter.stop()
    assert r.joules == pytest.approx(100 * 4 + 5 * 16)  # 480 J
    assert "integrated power" in r.source


def test_nvml_without_counter_or_power_is_unavailable(monkeypatch: pytest.MonkeyPatch, no_torch_cuda: None) -> None:
    fake = fake_pynvml(energy_mj=None, power_mw=None)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with pytest.raises(BackendUnavailable, match="neither energy"):
        NvmlMeter(0)
    assert fake.calls == ["init", "shutdown"]  # NVML released on the failed build


def test_nvml_index_mapping(monkeypatch: pytest.MonkeyPatch, no_torch_cuda: None) -> None:
    fake = fake_pynvml(energy_mj=[0], uuids=("GPU-aaaa", "GPU-bbbb"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    assert nvml_index_for_cuda(fake, 0) == (1, "matched by GPU UUID")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert nvml_index_for_cuda(fake, 0)[0] == 1 and nvml_index_for_cuda(fake, 1)[0] == 0
    monkeypatch.setattr("gear_trt.energy.nvml._cuda_uuid", lambda i: "bbbb")  # torch sees GPU-bbbb as cuda:0
    assert nvml_index_for_cuda(fake, 0) == (1, "matched by GPU UUID")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr("gear_trt.energy.nvml._cuda_uuid", lambda i: None)
    with pytest.raises(BackendUnavailable, match="no GPU 5"):
        nvml_index_for_cuda(fake, 5)


# --------------------------------------------------------------------------- jtop (fake jetson-stats)


def fake_jtop_module(total_mw: int = 7000) -> types.ModuleType:
    m = types.ModuleType("jtop")

    class FakeJtop:
        def __init__(self, interval: float = 1.0) -> None:
            self.interval, self.started, self.closed = interval, False, False
            self.power = {"rail": {"VDD_SOC": {"power": 1000}}, "tot": {"power": total_mw, "name": "VDD_IN"}}
            self.nvpmodel = types.SimpleNamespace(name="MODE_15W", id=1)
            self.jetson_clocks = True

        def start(self) -> None:
            self.started = True

        def close(self) -> None:
            self.closed = True

    m.jtop = FakeJtop
    return m


def test_jtop_meter_reads_total_power(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "jtop", fake_jtop_module(7000))
    with pytest.raises(BackendUnavailable, match="jtop service is not running"):
        JtopMeter(tmp_path)
    _write(tmp_path / "run/jtop.sock", "")
    clock = ManualClock()
    meter = JtopMeter(tmp_path, interval_s=0.25, clock=clock)
    assert meter._jetson.started and meter._jetson.interval == 0.25
    meter.interval_s = None  # drive sampling by hand
    meter.start()
    clock.t = 3.0
    assert meter.stop().joules == pytest.approx(21.0)
    info = meter.info()
    assert info["power_mode"] == {"name": "MODE_15W", "id": 1} and info["jetson_clocks"] is True
    assert meter.source == "jtop: total power (VDD_IN)"
    jetson = meter._jetson
    meter.close()
    assert jetson.closed


# --------------------------------------------------------------------------- automatic choice


def test_auto_meter_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_torch_cuda: None) -> None:
    orin_nx_tree(tmp_path)
    _write(tmp_path / "run/jtop.sock", "")
    monkeypatch.setitem(sys.modules, "jtop", fake_jtop_module())
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy_mj=[0, 0, 0]))
    assert auto_meter(root=tmp_path).kind == "nvml"

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=9))  # a Jetson: pynvml there, no NVML driver
    assert auto_meter(root=tmp_path).kind == "jtop"

    monkeypatch.setitem(sys.modules, "jtop", None)  # jetson-stats not installed
    assert auto_meter(root=tmp_path).kind == "ina3221"

    empty = tmp_path / "empty"
    empty.mkdir()
    meter = auto_meter(root=empty)
    assert isinstance(meter, NullMeter) and meter.source == NO_METER_SOURCE
    assert set(meter.skipped) == {"nvml", "jtop", "ina3221"}
    assert "Driver Not Loaded" in meter.skipped["nvml"] and "not importable" in meter.skipped["jtop"]


def test_explicit_meter_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(BackendUnavailable, match="pynvml"):
        auto_meter("nvml", root=tmp_path)
    with pytest.raises(ConfigError, match="unknown energy meter"):
        make_meter("rapl")
    assert auto_meter("none").kind == "none"


def test_null_meter_on_this_machine() -> None:
    if has_module("pynvml") or find_ina3221_rails("/") or Path("/run/jtop.sock").exists():
        pytest.skip("this machine has an energy meter")
    meter = auto_meter()
    assert isinstance(meter, NullMeter)
    with meter.measure() as m:
        time.sleep(0.01)
    assert m.reading is not None
    assert m.reading.joules is None and m.reading.mean_watts is None and m.reading.seconds >= 0.01
    assert m.reading.source == "none: no energy counter on this machine"

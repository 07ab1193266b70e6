"""NVIDIA desktop/server GPUs through NVML (`pip install nvidia-ml-py`, module `pynvml`).

Preferred: `nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver loaded, Volta and newer),
read at start and stop. Where that counter is unsupported, poll `nvmlDeviceGetPowerUsage` (mW)
and integrate; on Ampere (except GA100) and newer that reading is a 1 s average, so short
windows are smeared: measure windows of several seconds.

The scope is the GPU board only (not the host CPU or memory).

Device numbering: NVML counts GPUs in PCI bus order; CUDA (and torch) count fastest-first unless
CUDA_DEVICE_ORDER=PCI_BUS_ID, and honour CUDA_VISIBLE_DEVICES, which NVML ignores. So a CUDA
ordinal is mapped to an NVML index by UUID (through torch when it sees the GPU), else through
CUDA_VISIBLE_DEVICES; the mapping used is recorded.
"""

from __future__ import annotations

import os
import time
from types import ModuleType
from typing import Any

from gear_trt._deps import optional_import
from gear_trt.energy.base import Clock, PollingMeter
from gear_trt.errors import BackendUnavailable


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _strip_uuid(uuid: str) -> str:
    uuid = uuid.strip().lower()
    return uuid[4:] if uuid.startswith("gpu-") else uuid


def _cuda_uuid(cuda_device: int) -> str | None:
    """The UUID torch reports for a CUDA ordinal, or None (no torch, no CUDA)."""
    try:
        import torch

        if torch.cuda.is_available() and cuda_device < torch.cuda.device_count():
            return _strip_uuid(str(torch.cuda.get_device_properties(cuda_device).uuid))
    except Exception:
        return None
    return None


def nvml_index_for_cuda(nvml: ModuleType, cuda_device: int) -> tuple[int, str]:
    """NVML index of CUDA ordinal `cuda_device`, and how it was found (recorded in the manifest)."""
    count = int(nvml.nvmlDeviceGetCount())
    uuid = _cuda_uuid(cuda_device)
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if uuid is None and cuda_device < len(visible) and visible[cuda_device].lower().startswith("gpu-"):
        uuid = _strip_uuid(visible[cuda_device])
    if uuid is not None:
        for i in range(count):
            if _strip_uuid(_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))) == uuid:
                return i, "matched by GPU UUID"
    if visible and cuda_device < len(visible) and visible[cuda_device].isdigit():
        if os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID":
            return int(visible[cuda_device]), "CUDA_VISIBLE_DEVICES with CUDA_DEVICE_ORDER=PCI_BUS_ID"
        return int(visible[cuda_device]), "CUDA_VISIBLE_DEVICES (assumed PCI order; set CUDA_DEVICE_ORDER=PCI_BUS_ID to be sure)"
    if cuda_device >= count:
        raise BackendUnavailable(f"NVML sees {count} GPU(s); there is no GPU {cuda_device}", "pick an existing GPU index")
    how = "same index (CUDA_DEVICE_ORDER=PCI_BUS_ID)" if os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID" else \
        "assumed equal to the CUDA ordinal (set CUDA_DEVICE_ORDER=PCI_BUS_ID to be sure on multi-GPU hosts)"
    return cuda_device, how


class NvmlMeter(PollingMeter):
    """GPU board energy from NVML's total-energy counter, or integrated power where it is missing."""

    kind = "nvml"

    def __init__(self, cuda_device: int = 0, *, interval_s: float | None = 0.1, clock: Clock = time.perf_counter) -> None:
        super().__init__(interval_s=interval_s, clock=clock)
        nvml = optional_import("pynvml")
        try:
            nvml.nvmlInit()
        except Exception as exc:  # pynvml.NVMLError: no driver, no GPU (a Jetson before Thor)
            raise BackendUnavailable(f"NVML did not initialise: {exc}", "install the NVIDIA driver, or choose another energy meter") from exc
        self._nvml: ModuleType | None = nvml
        try:
            self.index, self.index_mapping = nvml_index_for_cuda(nvml, cuda_device)
            self._handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
            self.device_name = _text(nvml.nvmlDeviceGetName(self._handle))
            self.counter_error = ""
            try:
                nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
                self.uses_counter = True
            except nvml.NVMLError as exc:  # NVML_ERROR_NOT_SUPPORTED before Volta and on some boards
                self.uses_counter, self.counter_error = False, str(exc)
                try:
                    nvml.nvmlDeviceGetPowerUsage(self._handle)
                except nvml.NVMLError as exc2:
                    raise BackendUnavailable(
                        f"GPU {self.index} ({self.device_name}) reports neither energy ({exc}) nor power ({exc2}) through NVML",
                        "energy is not measurable on this GPU; run with the energy meter set to none",
                    ) from exc2
        except BaseException:
            self.close()
            raise
        self._start_mj = 0

    @property
    def source(self) -> str:
        how = "total-energy counter" if self.uses_counter else "integrated power readings"
        return f"nvml: {how} of GPU {self.index} ({self.device_name}), GPU board only"

    def info(self) -> dict[str, Any]:
        out = {**super().info(), "nvml_index": self.index, "index_mapping": self.index_mapping, "device": self.device_name,
               "counter": self.uses_counter, "scope": "GPU board"}
        if self.counter_error:
            out["counter_error"] = self.counter_error
        return out

    def read_watts(self) -> float:
        assert self._nvml is not None
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1000.0

    def _energy_mj(self) -> int:
        assert self._nvml is not None
        return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))

    def _begin(self) -> None:
        if self.uses_counter:
            self._start_mj = self._energy_mj()
        else:
            super()._begin()

    def _end(self) -> tuple[float | None, dict[str, Any]]:
        if not self.uses_counter:
            return super()._end()
        end_mj = self._energy_mj()
        return (end_mj - self._start_mj) / 1000.0, {"counter_start_mj": self._start_mj, "counter_end_mj": end_mj}

    def close(self) -> None:
        super().close()
        if self._nvml is not None:
            nvml, self._nvml = self._nvml, None
            try:
                nvml.nvmlShutdown()
            except Exception:
                pass

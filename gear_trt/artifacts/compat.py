"""Does a built engine run here? The compatibility rule, written once.

engines/src/compat.cpp is its C++ twin, and engines/tests/compat_cases.json, one table of cases,
drives the tests of both. From ../shared/reference/TENSORRT.md (sections 1.3 and 1.4):

  * TensorRT version: a plan is tied to the release that built it, so major.minor.patch must be
    equal (the fourth number, the build, is packaging, and the C++ runtime cannot see it). An engine
    built VERSION_COMPATIBLE (8.6+) runs on the same or a newer runtime within NVIDIA's span
    (8.x -> up to 10.x, 10.x -> 11.x, 11.x -> later 11.x), never on an older one.
  * GPU: the same compute capability, and the same GPU model unless the caller opts out
    (require_same_gpu=False): NVIDIA does not support a plan across GPU models even at equal SM.
    A hardware-compatible engine ("hardware_compatibility_level") relaxes this: AMPERE_PLUS runs on
    any GPU of compute capability 8.0 or newer, SAME_COMPUTE_CAPABILITY on any GPU of its own
    capability; neither compares GPU names.

An onnxruntime "engine" (a model saved after ORT_ENABLE_ALL) is tied to the onnxruntime version,
the machine and the CPU model that made it.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

from gear_trt.errors import ArtifactError

HARDWARE_LEVELS = ("NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY")
# Newest runtime major that runs a version-compatible engine, by the engine's major.
VERSION_COMPATIBLE_UNTIL = {8: 10, 9: 10, 10: 11, 11: 11}


def normalize_compute_capability(value: Any) -> Optional[str]:
    """'8.7', [8, 7], (8, 7), 8.7, 87 or 'sm_87' -> '8.7'; None if absent or unrecognised."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return f"{value[0]}.{value[1]}"
    text = str(value).strip().lower()
    m = re.fullmatch(r"(?:sm_?)?(\d+)(\d)", text)
    if m:
        return f"{int(m.group(1))}.{m.group(2)}"
    m = re.fullmatch(r"(\d+)\.(\d+)", text)
    return f"{int(m.group(1))}.{int(m.group(2))}" if m else None


def version_numbers(text: Any) -> tuple[int, ...]:
    """Up to three numbers of a version string: "10.3.0.30" -> (10, 3, 0)."""
    return tuple(int(p) for p in re.findall(r"\d+", str(text))[:3])


def rebuild_hint(info: Mapping[str, Any]) -> str:
    precision = info.get("precision")
    flag = f" --precision {precision}" if isinstance(precision, str) and precision else ""
    return f"rebuild it on this device: `gear-trt build-engine <model>.onnx{flag}` (engines are tied to the TensorRT version and GPU)"


def check_tensorrt_compat(info: Mapping[str, Any], *, runtime_version: str, gpu_name: str, compute_capability: Any,
                          require_same_gpu: bool = True, where: str = "engine") -> None:
    """ArtifactError (with the rebuild command) unless an engine built as `info`, the sidecar's
    "tensorrt" section, runs on this TensorRT and GPU."""
    hint = rebuild_hint(info)

    def fail(problem: str, fix: str = hint) -> ArtifactError:
        return ArtifactError(f"{where}: {problem}", fix)

    built_text = info.get("version")
    if not isinstance(built_text, str) or not built_text:
        raise fail("the sidecar's 'tensorrt' section has no 'version'")
    built, here = version_numbers(built_text), version_numbers(runtime_version)
    if len(built) < 3 or len(here) < 3:
        raise fail(f"cannot compare TensorRT versions '{built_text}' (engine) and '{runtime_version}' (runtime): each needs major.minor.patch")
    if info.get("version_compatible") is True:
        newest = VERSION_COMPATIBLE_UNTIL.get(built[0], built[0])
        if here < built:
            raise fail(f"engine was built with TensorRT {built_text}, which is newer than this runtime's {runtime_version}")
        if here[0] > newest:
            raise fail(f"engine was built version-compatible with TensorRT {built_text}, which runs on TensorRT {newest}.x at the newest; "
                       f"this runtime is TensorRT {runtime_version}")
    elif built != here:
        raise fail(f"engine was built with TensorRT {built_text}, this runtime is TensorRT {runtime_version}")

    cc_built = normalize_compute_capability(info.get("compute_capability"))
    cc_here = normalize_compute_capability(compute_capability)
    if cc_built is None:
        raise fail(f"the sidecar's 'tensorrt' section has no usable 'compute_capability' ({info.get('compute_capability')!r})")
    level = info.get("hardware_compatibility_level")
    level = "NONE" if level is None or level == "" else level
    if level not in HARDWARE_LEVELS:
        raise fail(f"unknown hardware_compatibility_level '{level}' (known: {', '.join(HARDWARE_LEVELS)})")
    name_built = info.get("gpu_name")
    name_built = name_built.strip() if isinstance(name_built, str) else ""
    if level == "AMPERE_PLUS":
        if cc_here is None or version_numbers(cc_here) < (8, 0):
            raise fail(f"engine was built hardware-compatible for Ampere and newer GPUs (compute capability 8.0+), this GPU is {cc_here} ({gpu_name})")
        return
    if cc_built != cc_here:
        raise fail(f"engine was built for a GPU of compute capability {cc_built} ({name_built or '?'}), this GPU is {cc_here} ({gpu_name})")
    if level == "SAME_COMPUTE_CAPABILITY" or not require_same_gpu:
        return
    opt_out = "rebuild the engine on this GPU, or pass require_same_gpu=False to run it on any GPU of the same compute capability"
    if not name_built:
        raise fail("the sidecar's 'tensorrt' section has no 'gpu_name', so the GPU model cannot be compared", opt_out)
    if name_built != gpu_name.strip():
        raise fail(f"engine was built on '{name_built}', this GPU is '{gpu_name}' (same compute capability {cc_here})", opt_out)


def check_onnxruntime_compat(info: Mapping[str, Any], *, version: str, machine: str, cpu: str, where: str = "model") -> None:
    """ArtifactError (with the rebuild command) unless an optimised onnxruntime model described by
    `info`, the sidecar's "onnxruntime" section, is valid here."""
    hint = "rebuild it here: `gear-trt build-engine <model>.onnx --backend onnxruntime` (optimised models are tied to the onnxruntime version and CPU)"
    for key, here in (("version", version), ("machine", machine), ("cpu", cpu)):
        built = info.get(key)
        if not built:
            raise ArtifactError(f"{where}: sidecar has no onnxruntime '{key}'", hint)
        if built != here:
            raise ArtifactError(f"{where}: optimised with onnxruntime {key} {built!r}, this is {here!r}", hint)

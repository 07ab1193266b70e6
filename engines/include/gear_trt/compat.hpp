// Does an engine (as described by its sidecar) run on this TensorRT and GPU? The one rule and the
// messages of gear_trt/artifacts/compat.py; engines/tests/compat_cases.json drives the tests of
// both. No TensorRT dependency, so it is tested everywhere and called by the TensorRT backend
// before deserializing.
#pragma once

#include <string>

#include "gear_trt/deploy_meta.hpp"

namespace gear_trt {

struct RuntimeInfo {
    std::string tensorrt_version;    // e.g. "10.3.0"
    std::string gpu_name;            // cudaDeviceProp::name
    std::string compute_capability;  // "major.minor"
};

// Decodes getInferLibVersion(): major*1000+minor*100+patch before TensorRT 10,
// major*10000+minor*100+patch from 10 on. 8502 -> "8.5.2", 100300 -> "10.3.0".
std::string tensorrt_version_string(long encoded);

// Throws gear_trt::Error unless the engine runs here: TensorRT major.minor.patch equal (a
// version-compatible engine: the runtime not older and within NVIDIA's span), the compute
// capability equal (or Ampere+ for an AMPERE_PLUS engine), and the GPU name equal when
// `require_same_gpu` and the engine is not hardware-compatible.
void check_tensorrt_compat(const TensorRTInfo& engine, const RuntimeInfo& here, bool require_same_gpu = true,
                           const std::string& where = "engine");

}  // namespace gear_trt

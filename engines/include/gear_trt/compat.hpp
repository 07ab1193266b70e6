// Does an engine (as described by its sidecar) run on this TensorRT and GPU? Same rules and
// messages as gear_trt.runtime.check_tensorrt_compat; no TensorRT dependency, so it is tested
// everywhere and called by the TensorRT backend before deserializing.
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

// Throws gear_trt::Error unless the engine runs here: TensorRT major.minor.patch equal (or the
// runtime not older for version-compatible engines), compute capability equal, and the GPU name
// equal when `require_same_gpu`.
void check_tensorrt_compat(const TensorRTInfo& engine, const RuntimeInfo& here, bool require_same_gpu = true,
                           const std::string& where = "engine");

}  // namespace gear_trt

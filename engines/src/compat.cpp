// The engine compatibility rule of gear_trt/artifacts/compat.py, in C++ (read the rule and its
// sources there). engines/tests/compat_cases.json drives the tests of both, so they agree.
#include "gear_trt/compat.hpp"

#include <algorithm>
#include <cctype>
#include <vector>

#include "gear_trt/error.hpp"

namespace gear_trt {

namespace {

// Up to three numbers found in `text` ("10.3.0.30" -> {10, 3, 0}).
std::vector<long> version_numbers(const std::string& text) {
    std::vector<long> parts;
    std::size_t i = 0;
    while (i < text.size() && parts.size() < 3) {
        if (std::isdigit(static_cast<unsigned char>(text[i]))) {
            long v = 0;
            while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) v = v * 10 + (text[i++] - '0');
            parts.push_back(v);
        } else {
            ++i;
        }
    }
    return parts;
}

std::string trim(const std::string& s) {
    std::size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return s.substr(a, b - a);
}

// Newest runtime major that runs a version-compatible engine of major `built` (8.x -> 10, 10.x -> 11, 11.x -> 11).
long version_compatible_until(long built) {
    switch (built) {
        case 8:
        case 9:
            return 10;
        case 10:
        case 11:
            return 11;
        default:
            return built;
    }
}

std::string rebuild_hint(const TensorRTInfo& engine) {
    const std::string flag = engine.precision.empty() ? "" : " --precision " + engine.precision;
    return "rebuild it on this device: `gear-trt build-engine <model>.onnx" + flag + "` (engines are tied to the TensorRT version and GPU)";
}

}  // namespace

std::string tensorrt_version_string(long encoded) {
    long major, minor, patch;
    if (encoded >= 10000) {
        major = encoded / 10000;
        minor = (encoded / 100) % 100;
    } else {
        major = encoded / 1000;
        minor = (encoded / 100) % 10;
    }
    patch = encoded % 100;
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

void check_tensorrt_compat(const TensorRTInfo& engine, const RuntimeInfo& here, bool require_same_gpu, const std::string& where) {
    const std::string hint = rebuild_hint(engine);
    auto fail = [&where, &hint](const std::string& problem, const std::string& fix = "") {
        throw Error(where + ": " + problem, fix.empty() ? hint : fix);
    };
    if (!engine.present)
        fail("the sidecar has no 'tensorrt' section, so this is not a tensorrt engine",
             "load the ONNX file with onnxruntime, or rebuild the engine with gear-trt");
    if (engine.version.empty()) fail("the sidecar's 'tensorrt' section has no 'version'");
    const std::vector<long> built = version_numbers(engine.version), runtime = version_numbers(here.tensorrt_version);
    if (built.size() < 3 || runtime.size() < 3)
        fail("cannot compare TensorRT versions '" + engine.version + "' (engine) and '" + here.tensorrt_version +
             "' (runtime): each needs major.minor.patch");
    if (engine.version_compatible) {
        const long newest = version_compatible_until(built[0]);
        if (runtime < built)
            fail("engine was built with TensorRT " + engine.version + ", which is newer than this runtime's " + here.tensorrt_version);
        if (runtime[0] > newest)
            fail("engine was built version-compatible with TensorRT " + engine.version + ", which runs on TensorRT " + std::to_string(newest) +
                 ".x at the newest; this runtime is TensorRT " + here.tensorrt_version);
    } else if (built != runtime) {
        fail("engine was built with TensorRT " + engine.version + ", this runtime is TensorRT " + here.tensorrt_version);
    }

    if (engine.compute_capability.empty()) fail("the sidecar's 'tensorrt' section has no usable 'compute_capability'");
    const std::string level = engine.hardware_compatibility_level.empty() ? "NONE" : engine.hardware_compatibility_level;
    if (level != "NONE" && level != "AMPERE_PLUS" && level != "SAME_COMPUTE_CAPABILITY")
        fail("unknown hardware_compatibility_level '" + level + "' (known: NONE, AMPERE_PLUS, SAME_COMPUTE_CAPABILITY)");
    const std::string name = trim(engine.gpu_name);
    if (level == "AMPERE_PLUS") {
        const std::vector<long> cc = version_numbers(here.compute_capability);
        if (cc.size() < 2 || cc < std::vector<long>{8, 0})
            fail("engine was built hardware-compatible for Ampere and newer GPUs (compute capability 8.0+), this GPU is " +
                 here.compute_capability + " (" + here.gpu_name + ")");
        return;
    }
    if (engine.compute_capability != here.compute_capability)
        fail("engine was built for a GPU of compute capability " + engine.compute_capability + " (" + (name.empty() ? "?" : name) +
             "), this GPU is " + here.compute_capability + " (" + here.gpu_name + ")");
    if (level == "SAME_COMPUTE_CAPABILITY" || !require_same_gpu) return;
    const std::string opt_out = "rebuild the engine on this GPU, or set require_same_gpu = false to run it on any GPU of the same compute capability";
    if (name.empty()) fail("the sidecar's 'tensorrt' section has no 'gpu_name', so the GPU model cannot be compared", opt_out);
    if (name != trim(here.gpu_name))
        fail("engine was built on '" + name + "', this GPU is '" + here.gpu_name + "' (same compute capability " + here.compute_capability + ")",
             opt_out);
}

}  // namespace gear_trt

#include "gear_trt/compat.hpp"

#include <algorithm>
#include <cctype>
#include <vector>

#include "gear_trt/error.hpp"

namespace gear_trt {

namespace {

const char* kRebuild = "rebuild the engine on this device with `gear-trt build-engine` (engines are not portable across TensorRT versions or GPUs)";

// Up to three numbers found in `text` ("10.3.0.30" -> {10, 3, 0}).
std::vector<long> version_triple(const std::string& text) {
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
    auto fail = [&where](const std::string& problem, const std::string& fix = kRebuild) { throw Error(where + ": " + problem, fix); };
    if (!engine.present) fail("the sidecar has no 'tensorrt' section, so this is not a TensorRT engine", "load the ONNX file with onnxruntime, or rebuild the engine with gear-trt");
    if (engine.version.empty()) fail("sidecar's 'tensorrt' section has no 'version'");
    const std::vector<long> b = version_triple(engine.version), r = version_triple(here.tensorrt_version);
    if (b.size() < 2 || r.size() < 2)
        fail("cannot compare TensorRT versions '" + engine.version + "' (engine) and '" + here.tensorrt_version + "' (runtime)");
    const std::size_t n = std::min(b.size(), r.size());
    const bool same = std::equal(b.begin(), b.begin() + static_cast<long>(n), r.begin());
    if (engine.version_compatible) {
        if (std::lexicographical_compare(r.begin(), r.end(), b.begin(), b.end()))
            fail("engine was built with TensorRT " + engine.version + ", which is newer than this runtime's " + here.tensorrt_version);
    } else if (!same) {
        fail("engine was built with TensorRT " + engine.version + ", this runtime is TensorRT " + here.tensorrt_version);
    }
    if (engine.compute_capability.empty()) fail("sidecar's 'tensorrt' section has no usable 'compute_capability'");
    if (engine.compute_capability != here.compute_capability)
        fail("engine was built for a GPU of compute capability " + engine.compute_capability + " (" +
             (engine.gpu_name.empty() ? "?" : engine.gpu_name) + "), this GPU is " + here.compute_capability + " (" + here.gpu_name + ")");
    if (require_same_gpu && !engine.gpu_name.empty() && trim(engine.gpu_name) != trim(here.gpu_name))
        fail("engine was built on '" + engine.gpu_name + "', this GPU is '" + here.gpu_name + "' (same compute capability " +
                 here.compute_capability + ")",
             "rebuild the engine on this GPU, or set require_same_gpu = false to run it anyway");
}

}  // namespace gear_trt

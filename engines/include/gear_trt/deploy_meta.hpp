// The "gear-trt/1" deployment metadata (gear_trt/artifacts/meta.py) as read from an engine's
// sidecar JSON. The checks and defaults are those of the Python reader (DeployMeta.from_dict and
// gear_trt/artifacts/sidecar.py), so both accept and reject the same files.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "gear_trt/json.hpp"

namespace gear_trt {

inline constexpr const char* kFormat = "gear-trt/1";

struct Preprocess {
    int input_size = 0;
    std::array<float, 3> mean{};  // per channel, in the model's channel order
    std::array<float, 3> std{};
    float scale = static_cast<float>(1.0 / 255.0);
    std::string color = "RGB";  // channel order the model was trained on: RGB or BGR
    std::string layout = "NCHW";
    std::string resize = "bilinear-half-pixel";
};

// The sidecar's "tensorrt" section: where and how the engine was built.
struct TensorRTInfo {
    bool present = false;
    std::string version;             // e.g. "10.3.0.30"
    std::string gpu_name;            // e.g. "Orin"
    std::string compute_capability;  // normalised "major.minor", e.g. "8.7"; empty if absent
    std::string precision;
    bool version_compatible = false;         // built with BuilderFlag::kVERSION_COMPATIBLE
    std::string hardware_compatibility_level;  // "", "NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"
};

struct DeployMeta {
    std::string format;
    Preprocess preprocess;
    std::vector<std::string> classes;
    std::string input_name = "input";
    std::string output_name = "logits";
    std::string input_dtype = "float32";
    std::string precision = "fp32";
    std::string spec_hash;
    std::string checkpoint;
    std::string backend;        // "tensorrt", "onnxruntime", or "" (ONNX metadata)
    std::string engine_sha256;  // sha256 of the engine file the sidecar was written for, if recorded
    TensorRTInfo tensorrt;

    int num_classes() const { return static_cast<int>(classes.size()); }
};

// Parses and validates sidecar text; `where` names the source in error messages.
DeployMeta parse_deploy_meta(const std::string& json_text, const std::string& where = "metadata");

// Path of the sidecar of `artifact`: "<artifact>.json" if it exists, else "<stem>.json" if it
// exists, else "<artifact>.json".
std::string sidecar_path(const std::string& artifact);

// Reads and parses the sidecar of an engine file; a missing sidecar is a clear gear_trt::Error.
DeployMeta load_sidecar(const std::string& artifact);

// The "tensorrt" section of a sidecar (a JSON object) as TensorRTInfo; fields of the wrong JSON
// type count as absent, as in Python.
TensorRTInfo parse_tensorrt_section(const json::Value& section);

// "8.7", [8, 7], 8.7, "sm_87" or "87" -> "8.7"; "" when unrecognised.
std::string normalize_compute_capability(const json::Value& value);

}  // namespace gear_trt

#include "gear_trt/deploy_meta.hpp"

#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>

#include "gear_trt/error.hpp"

namespace gear_trt {

namespace {

const char* kReexport = "re-export the model with gear-trt (it writes complete metadata)";

[[noreturn]] void fail(const std::string& where, const std::string& problem, const std::string& fix = kReexport) {
    throw Error(where + ": " + problem, fix);
}

std::string optional_string(const json::Value& obj, const char* key, const std::string& fallback, const std::string& where,
                            const std::string& prefix = "") {
    const json::Value* v = obj.find(key);
    if (v == nullptr) return fallback;
    if (!v->is_string() || v->string.empty())
        fail(where, "metadata '" + prefix + key + "' must be a non-empty string, got " + json::type_name(v->type));
    return v->string;
}

std::array<float, 3> three_floats(const json::Value& pre, const char* key, const std::string& where) {
    const json::Value* v = pre.find(key);
    bool ok = v != nullptr && v->is_array() && v->array.size() == 3;
    for (std::size_t i = 0; ok && i < 3; ++i) ok = v->array[i].is_number();
    if (!ok) fail(where, std::string("preprocess.") + key + " must be 3 finite numbers");
    // JSON numbers are parsed to double, then rounded to float, like numpy's float32(value).
    return {static_cast<float>(v->array[0].number), static_cast<float>(v->array[1].number),
            static_cast<float>(v->array[2].number)};
}

void check_choice(const std::string& where, const char* key, const std::string& value, std::initializer_list<const char*> allowed) {
    std::string list;
    for (const char* a : allowed) {
        if (value == a) return;
        list += list.empty() ? a : std::string(", ") + a;
    }
    fail(where, std::string("preprocess.") + key + " '" + value + "' is not supported (supported: " + list + ")",
         "re-export with a supported setting or upgrade gear-trt");
}

Preprocess parse_preprocess(const json::Value& root, const std::string& where) {
    const json::Value* pre = root.find("preprocess");
    if (pre == nullptr || !pre->is_object()) fail(where, "metadata has no 'preprocess' object");
    static const char* known[] = {"input_size", "mean", "std", "scale", "color", "layout", "resize"};
    for (const auto& member : pre->object) {
        bool is_known = false;
        for (const char* k : known) is_known = is_known || member.first == k;
        if (!is_known) fail(where, "unknown preprocess field '" + member.first + "'");
    }
    Preprocess p;
    const json::Value* size = pre->find("input_size");
    if (size == nullptr || !size->is_number() || !size->is_integer || size->number < 1 || size->number > 1 << 20)
        fail(where, "preprocess.input_size must be a positive integer");
    p.input_size = static_cast<int>(size->number);
    p.mean = three_floats(*pre, "mean", where);
    p.std = three_floats(*pre, "std", where);
    for (float s : p.std)
        if (s == 0.0f) fail(where, "preprocess.std has a zero");
    if (const json::Value* scale = pre->find("scale")) {
        if (!scale->is_number()) fail(where, "preprocess.scale must be a finite number");
        p.scale = static_cast<float>(scale->number);
    }
    p.color = optional_string(*pre, "color", p.color, where, "preprocess.");
    p.layout = optional_string(*pre, "layout", p.layout, where, "preprocess.");
    p.resize = optional_string(*pre, "resize", p.resize, where, "preprocess.");
    check_choice(where, "color", p.color, {"RGB", "BGR"});
    check_choice(where, "layout", p.layout, {"NCHW"});
    check_choice(where, "resize", p.resize, {"bilinear-half-pixel"});
    return p;
}

TensorRTInfo parse_tensorrt(const json::Value& root, const std::string& where) {
    const json::Value* t = root.find("tensorrt");
    if (t == nullptr || t->is_null()) return TensorRTInfo{};
    if (!t->is_object()) fail(where, "the 'tensorrt' section must be an object", "rebuild the engine with gear-trt");
    return parse_tensorrt_section(*t);
}

bool file_exists(const std::string& path) {
    std::ifstream f(path);
    return f.good();
}

}  // namespace

TensorRTInfo parse_tensorrt_section(const json::Value& t) {
    TensorRTInfo info;
    info.present = true;
    if (const json::Value* v = t.find("version"); v && v->is_string()) info.version = v->string;
    if (const json::Value* v = t.find("gpu_name"); v && v->is_string()) info.gpu_name = v->string;
    if (const json::Value* v = t.find("precision"); v && v->is_string()) info.precision = v->string;
    if (const json::Value* v = t.find("version_compatible"); v && v->is_bool()) info.version_compatible = v->boolean;
    if (const json::Value* v = t.find("compute_capability")) info.compute_capability = normalize_compute_capability(*v);
    if (const json::Value* v = t.find("hardware_compatibility_level"); v && !v->is_null())
        info.hardware_compatibility_level = v->is_string() ? v->string : json::type_name(v->type);
    return info;
}

std::string normalize_compute_capability(const json::Value& value) {
    auto from_digits = [](const std::string& digits) -> std::string {  // "87" -> "8.7"
        if (digits.size() < 2) return "";
        for (char c : digits)
            if (!std::isdigit(static_cast<unsigned char>(c))) return "";
        std::string major = digits.substr(0, digits.size() - 1);
        while (major.size() > 1 && major[0] == '0') major.erase(0, 1);
        return major + "." + digits.back();
    };
    auto from_dotted = [](const std::string& text) -> std::string {  // "8.7" -> "8.7"
        std::size_t dot = text.find('.');
        if (dot == std::string::npos || dot == 0 || dot + 1 == text.size()) return "";
        for (std::size_t i = 0; i < text.size(); ++i)
            if (i != dot && !std::isdigit(static_cast<unsigned char>(text[i]))) return "";
        return std::to_string(std::stoi(text.substr(0, dot))) + "." + std::to_string(std::stoi(text.substr(dot + 1)));
    };
    if (value.is_array() && value.array.size() == 2 && value.array[0].is_integer && value.array[1].is_integer)
        return std::to_string(static_cast<long>(value.array[0].number)) + "." + std::to_string(static_cast<long>(value.array[1].number));
    std::string text;
    if (value.is_number()) {
        std::ostringstream out;  // 8.7 -> "8.7", 87 -> "87"
        out.imbue(std::locale::classic());
        out << value.number;
        text = out.str();
        if (value.is_integer) return from_digits(text);
    } else if (value.is_string()) {
        for (char c : value.string) text += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.erase(0, 1);
    } else {
        return "";
    }
    if (text.find('.') != std::string::npos) return from_dotted(text);
    if (text.rfind("sm_", 0) == 0) text = text.substr(3);
    else if (text.rfind("sm", 0) == 0) text = text.substr(2);
    return from_digits(text);
}

DeployMeta parse_deploy_meta(const std::string& json_text, const std::string& where) {
    json::Value root;
    try {
        root = json::parse(json_text);
    } catch (const Error& e) {
        fail(where, "metadata is not valid JSON (" + e.message() + ")");
    }
    if (!root.is_object()) fail(where, "metadata is not a JSON object");
    // A sidecar may nest the metadata under "gear_trt" (the ONNX metadata key).
    if (root.find("format") == nullptr) {
        if (const json::Value* nested = root.find("gear_trt"); nested && nested->is_object()) {
            json::Value merged = *nested;
            for (const auto& member : root.object)
                if (member.first != "gear_trt") merged.object.push_back(member);
            root = merged;
        }
    }
    DeployMeta m;
    const json::Value* format = root.find("format");
    m.format = format && format->is_string() ? format->string : "";
    if (m.format != kFormat)
        fail(where, "metadata format is '" + (format && format->is_string() ? format->string : std::string(format ? json::type_name(format->type) : "missing")) +
                        "', expected '" + kFormat + "'");
    m.preprocess = parse_preprocess(root, where);
    const json::Value* classes = root.find("classes");
    bool ok = classes != nullptr && classes->is_array() && !classes->array.empty();
    for (std::size_t i = 0; ok && i < classes->array.size(); ++i) ok = classes->array[i].is_string();
    if (!ok) fail(where, "metadata 'classes' must be a non-empty list of names");
    for (const auto& c : classes->array) m.classes.push_back(c.string);
    m.input_name = optional_string(root, "input_name", m.input_name, where);
    m.output_name = optional_string(root, "output_name", m.output_name, where);
    m.input_dtype = optional_string(root, "input_dtype", m.input_dtype, where);
    m.precision = optional_string(root, "precision", m.precision, where);
    if (m.input_dtype != "float32")
        fail(where, "input dtype '" + m.input_dtype + "' is not supported (float32 only)", "export the model with float32 input");
    if (const json::Value* v = root.find("spec_hash"); v && v->is_string()) m.spec_hash = v->string;
    if (const json::Value* v = root.find("checkpoint"); v && v->is_string()) m.checkpoint = v->string;
    if (const json::Value* v = root.find("backend"); v && v->is_string()) m.backend = v->string;
    if (const json::Value* v = root.find("engine_sha256"); v && v->is_string()) m.engine_sha256 = v->string;
    m.tensorrt = parse_tensorrt(root, where);
    return m;
}

std::string sidecar_path(const std::string& artifact) {
    const std::string appended = artifact + ".json";
    if (file_exists(appended)) return appended;
    const std::size_t slash = artifact.find_last_of("/\\");
    const std::size_t dot = artifact.find_last_of('.');
    if (dot != std::string::npos && (slash == std::string::npos || dot > slash + 1)) {
        const std::string replaced = artifact.substr(0, dot) + ".json";
        if (replaced != artifact && file_exists(replaced)) return replaced;
    }
    return appended;
}

DeployMeta load_sidecar(const std::string& artifact) {
    const std::string path = sidecar_path(artifact);
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw Error("no metadata sidecar for " + artifact + " (looked for " + path + ")",
                    "copy the <engine>.json that gear-trt wrote next to the engine; it carries the preprocessing and class names");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return parse_deploy_meta(text.str(), path);
}

}  // namespace gear_trt

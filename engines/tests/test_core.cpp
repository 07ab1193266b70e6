// Tests of the C++ core (no TensorRT): JSON, sidecar parsing and validation, preprocessing on
// fixed images against values computed with torch/numpy, softmax/top-k, engine checks, PPM.
// A tiny self-contained harness: each CHECK failure is printed; the exit code is the count.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <limits>
#include <string>
#include <vector>

#include "gear_trt/compat.hpp"
#include "gear_trt/deploy_meta.hpp"
#include "gear_trt/error.hpp"
#include "gear_trt/image_io.hpp"
#include "gear_trt/json.hpp"
#include "gear_trt/postprocess.hpp"
#include "gear_trt/preprocess.hpp"
#include "gear_trt/sha256.hpp"

namespace {

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        ++g_checks;                                                                        \
        if (!(cond)) {                                                                     \
            ++g_failures;                                                                  \
            std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK failed: " #cond << "\n"; \
        }                                                                                  \
    } while (0)

// Expects fn() to throw gear_trt::Error whose what() contains `needle`.
void check_throws(const std::function<void()>& fn, const std::string& needle, int line) {
    ++g_checks;
    try {
        fn();
    } catch (const gear_trt::Error& e) {
        if (std::string(e.what()).find(needle) == std::string::npos) {
            ++g_failures;
            std::cerr << __FILE__ << ":" << line << ": error \"" << e.what() << "\" lacks \"" << needle << "\"\n";
        }
        return;
    } catch (const std::exception& e) {
        ++g_failures;
        std::cerr << __FILE__ << ":" << line << ": wrong exception type: " << e.what() << "\n";
        return;
    }
    ++g_failures;
    std::cerr << __FILE__ << ":" << line << ": no exception, expected one with \"" << needle << "\"\n";
}
#define CHECK_THROWS(expr, needle) check_throws([&]() { (void)(expr); }, needle, __LINE__)

std::uint32_t bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

float from_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

void check_bits(const std::vector<float>& got, const std::vector<std::uint32_t>& expected, int line) {
    ++g_checks;
    if (got.size() != expected.size()) {
        ++g_failures;
        std::cerr << __FILE__ << ":" << line << ": size " << got.size() << " != " << expected.size() << "\n";
        return;
    }
    for (std::size_t i = 0; i < got.size(); ++i) {
        if (bits(got[i]) != expected[i]) {
            ++g_failures;
            std::fprintf(stderr, "%s:%d: element %zu is %.9g (0x%08x), expected %.9g (0x%08x)\n", __FILE__, line, i, got[i], bits(got[i]),
                         from_bits(expected[i]), expected[i]);
            return;
        }
    }
}
#define CHECK_BITS(got, ...) check_bits(got, std::vector<std::uint32_t>{__VA_ARGS__}, __LINE__)

// A sidecar as gear-trt writes it (DeployMeta.to_dict() + "tensorrt").
const char* kSidecar = R"({
  "checkpoint": "checkpoints/era.pt", "classes": ["airplane", "automobile", "bird"],
  "format": "gear-trt/1", "input_dtype": "float32", "input_name": "input", "input_shape": [-1, 3, 32, 32],
  "lineage": {"run": "runs/x", "stage": "era"}, "output_name": "logits", "precision": "fp16",
  "preprocess": {"color": "RGB", "input_size": 32, "layout": "NCHW", "mean": [0.4914, 0.4822, 0.4465],
                 "resize": "bilinear-half-pixel", "scale": 0.00392156862745098, "std": [0.247, 0.2435, 0.2616]},
  "spec": {"family": "vgg19", "widths": [8, 8]}, "spec_hash": "abc123",
  "tensorrt": {"version": "10.3.0.30", "gpu_name": "Orin", "compute_capability": "8.7", "precision": "fp16"}
})";

// kSidecar with `from` replaced by `to` (which must occur).
std::string edited(const std::string& from, const std::string& to) {
    std::string s = kSidecar;
    const std::size_t at = s.find(from);
    if (at == std::string::npos) throw std::logic_error("test bug: '" + from + "' not in the sidecar");
    return s.replace(at, from.size(), to);
}

gear_trt::Preprocess plain(int size) {  // scale 1, mean 0, std 1: the output is the resized pixels
    gear_trt::Preprocess p;
    p.input_size = size;
    p.mean = {0.0f, 0.0f, 0.0f};
    p.std = {1.0f, 1.0f, 1.0f};
    p.scale = 1.0f;
    return p;
}

// One channel of a preprocessed single-channel-replicated image.
std::vector<float> plane(const std::vector<float>& chw, int c, int size) {
    return std::vector<float>(chw.begin() + c * size * size, chw.begin() + (c + 1) * size * size);
}

// A grey image (same value in R, G, B) from a row-major plane.
std::vector<std::uint8_t> grey(const std::vector<int>& values) {
    std::vector<std::uint8_t> out;
    for (int v : values)
        for (int c = 0; c < 3; ++c) out.push_back(static_cast<std::uint8_t>(v));
    return out;
}

std::vector<float> run(const std::vector<std::uint8_t>& pixels, int h, int w, const gear_trt::Preprocess& pre) {
    std::vector<float> out(gear_trt::input_floats(pre));
    gear_trt::preprocess(gear_trt::ImageView{pixels.data(), h, w, 3, 0, gear_trt::ColorOrder::RGB}, pre, out.data());
    return out;
}

void test_json() {
    using gear_trt::json::parse;
    const auto v = parse(R"( {"a": [1, -2.5e1, true, false, null], "s": "x\"\\\/\n\u00e9\ud83d\ude00", "a": 7, "o": {}} )");
    CHECK(v.is_object());
    const auto* a = v.find("a");
    CHECK(a && a->is_number() && a->number == 7 && a->is_integer);  // duplicate key: the last wins
    CHECK(v.object.size() == 4);
    const auto& arr = v.object[0].second;
    CHECK(arr.is_array() && arr.array.size() == 5);
    CHECK(arr.array[1].number == -25.0 && !arr.array[1].is_integer);
    CHECK(arr.array[2].boolean && !arr.array[3].boolean && arr.array[4].is_null());
    CHECK(v.find("s")->string == "x\"\\/\n\xc3\xa9\xf0\x9f\x98\x80");
    CHECK(v.find("o")->is_object() && v.find("missing") == nullptr);
    CHECK(parse("0.1").number == 0.1);  // correctly rounded
    CHECK(parse("0.00392156862745098").number == 1.0 / 255.0);
    CHECK_THROWS(parse(R"({"a": 1,})"), "expected a string key");
    CHECK_THROWS(parse(R"([1, 2)"), "expected ',' or ']'");
    CHECK_THROWS(parse("\"abc"), "unterminated string");
    CHECK_THROWS(parse(R"("\q")"), "bad escape");
    CHECK_THROWS(parse(R"("\ud83d")"), "unpaired surrogate");
    CHECK_THROWS(parse("01"), "unexpected text");
    CHECK_THROWS(parse("NaN"), "unexpected character");
    CHECK_THROWS(parse("1e999"), "out of range");
    CHECK_THROWS(parse("{} x"), "unexpected text after");
    CHECK_THROWS(parse(""), "unexpected end");
    CHECK_THROWS(parse("{\n  \"a\": tru }"), "line 2, column 8");
    CHECK_THROWS(parse(std::string(100, '[') + std::string(100, ']')), "nesting deeper");
}

void test_sidecar() {
    const gear_trt::DeployMeta m = gear_trt::parse_deploy_meta(kSidecar, "model.engine.json");
    CHECK(m.format == "gear-trt/1");
    CHECK(m.preprocess.input_size == 32);
    CHECK(bits(m.preprocess.mean[1]) == bits(0.4822f) && bits(m.preprocess.std[2]) == bits(0.2616f));
    CHECK(bits(m.preprocess.scale) == bits(static_cast<float>(1.0 / 255.0)));
    CHECK(m.preprocess.color == "RGB" && m.preprocess.layout == "NCHW" && m.preprocess.resize == "bilinear-half-pixel");
    CHECK((m.classes == std::vector<std::string>{"airplane", "automobile", "bird"}) && m.num_classes() == 3);
    CHECK(m.input_name == "input" && m.output_name == "logits" && m.precision == "fp16");
    CHECK(m.spec_hash == "abc123" && m.checkpoint == "checkpoints/era.pt");
    CHECK(m.tensorrt.present && m.tensorrt.version == "10.3.0.30" && m.tensorrt.gpu_name == "Orin");
    CHECK(m.tensorrt.compute_capability == "8.7" && !m.tensorrt.version_compatible);

    // Optional fields take the Python defaults.
    const auto d = gear_trt::parse_deploy_meta(
        R"({"format": "gear-trt/1", "classes": ["a", "b"], "preprocess": {"input_size": 8, "mean": [0, 0, 0], "std": [1, 1, 1]}})");
    CHECK(bits(d.preprocess.scale) == bits(static_cast<float>(1.0 / 255.0)) && d.preprocess.color == "RGB");
    CHECK(d.input_name == "input" && d.output_name == "logits" && d.precision == "fp32" && !d.tensorrt.present);
    // Nested under "gear_trt", with the tensorrt section beside it.
    const auto n = gear_trt::parse_deploy_meta(R"({"gear_trt": {"format": "gear-trt/1", "classes": ["a"], "preprocess": {"input_size": 8,
        "mean": [0, 0, 0], "std": [1, 1, 1]}}, "tensorrt": {"version": "8.5.2", "compute_capability": [7, 2]}})");
    CHECK(n.tensorrt.present && n.tensorrt.compute_capability == "7.2");

    using gear_trt::parse_deploy_meta;
    CHECK_THROWS(parse_deploy_meta("{\"format\": ", "x.json"), "x.json: metadata is not valid JSON");
    CHECK_THROWS(parse_deploy_meta("[1]"), "not a JSON object");
    CHECK_THROWS(parse_deploy_meta(edited("\"gear-trt/1\"", "\"gear-trt/0\"")), "format is 'gear-trt/0'");
    CHECK_THROWS(parse_deploy_meta(edited("\"format\": \"gear-trt/1\",", "")), "format is 'missing'");
    CHECK_THROWS(parse_deploy_meta(edited("\"preprocess\"", "\"preprocessing\"")), "no 'preprocess' object");
    CHECK_THROWS(parse_deploy_meta(edited("\"input_size\": 32", "\"input_size\": 32.0")), "input_size must be a positive integer");
    CHECK_THROWS(parse_deploy_meta(edited("\"input_size\": 32", "\"input_size\": \"32\"")), "input_size must be a positive integer");
    CHECK_THROWS(parse_deploy_meta(edited("\"input_size\": 32", "\"input_size\": 0")), "input_size must be a positive integer");
    CHECK_THROWS(parse_deploy_meta(edited("\"input_size\": 32,", "")), "input_size must be a positive integer");
    CHECK_THROWS(parse_deploy_meta(edited("[0.4914, 0.4822, 0.4465]", "[0.4914, 0.4822]")), "preprocess.mean must be 3 finite numbers");
    CHECK_THROWS(parse_deploy_meta(edited("[0.4914, 0.4822, 0.4465]", "[0.4914, \"0.4822\", 0.4465]")), "preprocess.mean must be 3");
    CHECK_THROWS(parse_deploy_meta(edited("[0.247, 0.2435, 0.2616]", "[0.247, 0, 0.2616]")), "std has a zero");
    CHECK_THROWS(parse_deploy_meta(edited("\"std\": [0.247, 0.2435, 0.2616]", "\"sd\": [1, 1, 1]")), "unknown preprocess field 'sd'");
    CHECK_THROWS(parse_deploy_meta(edited("\"color\": \"RGB\"", "\"color\": \"YUV\"")), "color 'YUV' is not supported");
    CHECK_THROWS(parse_deploy_meta(edited("\"layout\": \"NCHW\"", "\"layout\": \"NHWC\"")), "layout 'NHWC' is not supported");
    CHECK_THROWS(parse_deploy_meta(edited("\"resize\": \"bilinear-half-pixel\"", "\"resize\": \"nearest\"")), "resize 'nearest'");
    CHECK_THROWS(parse_deploy_meta(edited("\"scale\": 0.00392156862745098", "\"scale\": null")), "scale must be a finite number");
    CHECK_THROWS(parse_deploy_meta(edited("[\"airplane\", \"automobile\", \"bird\"]", "[]")), "'classes' must be a non-empty list");
    CHECK_THROWS(parse_deploy_meta(edited("[\"airplane\", \"automobile\", \"bird\"]", "[\"a\", 2]")), "'classes' must be a non-empty list");
    CHECK_THROWS(parse_deploy_meta(edited("\"classes\"", "\"labels\"")), "'classes' must be a non-empty list");
    CHECK_THROWS(parse_deploy_meta(edited("\"input_dtype\": \"float32\"", "\"input_dtype\": \"float16\"")), "float32 only");
    CHECK_THROWS(parse_deploy_meta(edited("\"input_name\": \"input\"", "\"input_name\": \"\"")), "'input_name' must be a non-empty string");
    CHECK_THROWS(parse_deploy_meta(edited("\"tensorrt\": {", "\"tensorrt\": [{") + "]"), "JSON");  // now malformed
    CHECK_THROWS(parse_deploy_meta(edited("\"tensorrt\": {\"version\": \"10.3.0.30\", \"gpu_name\": \"Orin\", \"compute_capability\": \"8.7\", \"precision\": \"fp16\"}",
                                          "\"tensorrt\": 5")),
                 "'tensorrt' section must be an object");
}

void test_sidecar_files() {
    const std::string dir = "gear_trt_test_sidecar";
    std::remove((dir + ".engine.json").c_str());
    std::remove((dir + ".json").c_str());
    CHECK_THROWS(gear_trt::load_sidecar(dir + ".engine"), "no metadata sidecar for gear_trt_test_sidecar.engine");
    {
        std::ofstream(dir + ".json") << kSidecar;  // model.json beside model.engine
    }
    CHECK(gear_trt::sidecar_path(dir + ".engine") == dir + ".json");
    CHECK(gear_trt::load_sidecar(dir + ".engine").classes.size() == 3);
    {
        std::ofstream(dir + ".engine.json") << "{ broken";  // model.engine.json wins
    }
    CHECK(gear_trt::sidecar_path(dir + ".engine") == dir + ".engine.json");
    CHECK_THROWS(gear_trt::load_sidecar(dir + ".engine"), "gear_trt_test_sidecar.engine.json: metadata is not valid JSON");
    std::remove((dir + ".engine.json").c_str());
    std::remove((dir + ".json").c_str());
}

void test_compute_capability() {
    using gear_trt::json::parse;
    using gear_trt::normalize_compute_capability;
    CHECK(normalize_compute_capability(parse("\"8.7\"")) == "8.7");
    CHECK(normalize_compute_capability(parse("[8, 7]")) == "8.7");
    CHECK(normalize_compute_capability(parse("8.7")) == "8.7");
    CHECK(normalize_compute_capability(parse("\"sm_87\"")) == "8.7");
    CHECK(normalize_compute_capability(parse("87")) == "8.7");
    CHECK(normalize_compute_capability(parse("\"12.0\"")) == "12.0");
    CHECK(normalize_compute_capability(parse("null")).empty());
    CHECK(normalize_compute_capability(parse("\"x\"")).empty());
}

void test_normalize_values() {
    // Pixels 0, 1, 127, 128, 254, 255 in all channels with the CIFAR statistics; expected bits
    // from numpy: (float32(p) * float32(1/255) - float32(mean[c])) / float32(std[c]).
    gear_trt::Preprocess pre;
    pre.input_size = 6;
    pre.mean = {0.4914f, 0.4822f, 0.4465f};
    pre.std = {0.2470f, 0.2435f, 0.2616f};
    std::vector<std::uint8_t> row;
    for (int v : {0, 1, 127, 128, 254, 255})
        for (int c = 0; c < 3; ++c) row.push_back(static_cast<std::uint8_t>(v));
    std::vector<std::uint8_t> img;
    for (int y = 0; y < 6; ++y) img.insert(img.end(), row.begin(), row.end());
    const std::vector<float> out = run(img, 6, 6, pre);
    auto first_row = [&](int c) { return std::vector<float>(out.begin() + c * 36, out.begin() + c * 36 + 6); };
    CHECK_BITS(first_row(0), 0xbffea713, 0xbffc9ed3, 0x3cdc3272, 0x3d2f2140, 0x4002c453, 0x4003c873);
    CHECK_BITS(first_row(1), 0xbffd7a10, 0xbffb6a55, 0x3d853805, 0x3da633ae, 0x40071088, 0x40081864);
    CHECK_BITS(first_row(2), 0xbfda7891, 0xbfd88d5a, 0x3e49be6c, 0x3e591825, 0x40067416, 0x400769b1);
}

void test_resize_values() {
    // Expected values from torch.nn.functional.interpolate(mode="bilinear", align_corners=False)
    // (exact arithmetic in these cases, so any evaluation order agrees).
    CHECK_BITS(plane(run(grey({0, 10, 20, 30, 40, 50, 60, 70, 80}), 3, 3, plain(2)), 0, 2),  // 3x3 -> 2x2
               0x41200000, 0x41c80000, 0x425c0000, 0x428c0000);
    CHECK_BITS(plane(run(grey({7, 200, 13, 90, 33, 255}), 2, 3, plain(3)), 1, 3),  // 2x3 -> 3x3
               0x40e00000, 0x43480000, 0x41500000, 0x42420000, 0x42e90000, 0x43060000, 0x42b40000, 0x42040000, 0x437f0000);
    // 3x5 -> 4x4 (scales 0.75 and 1.25)
    CHECK_BITS(plane(run(grey({12, 250, 3, 77, 140, 0, 99, 201, 45, 180, 255, 17, 66, 128, 31}), 3, 5, plain(4)), 2, 4),
               0x42270000, 0x431d6000, 0x42450000, 0x43042000, 0x41bb2000, 0x4310cc00, 0x42a65000, 0x43178000, 0x42b86800, 0x42c61800,
               0x42cff000, 0x42ec4000, 0x43614000, 0x420d8000, 0x42d18000, 0x422c8000);
    // 3x7 -> 2x3 through resize_plane: inexact weights (scale 7/3), where rounding matters.
    // Expected from numpy (gear_trt.runtime.resize_bilinear: every product and sum rounded).
    // torch's x86 AVX2 kernel fuses multiply-adds and gives 0x42ff8003 for the last value.
    const std::vector<float> in = {12, 250, 3, 77, 140, 9, 222, 0, 99, 201, 45, 180, 61, 7, 255, 17, 66, 128, 31, 190, 88};
    std::vector<float> out(6);
    gear_trt::resize_plane(in.data(), 3, 7, out.data(), 2, 3);
    CHECK_BITS(out, 0x43107fff, 0x428a0000, 0x428d7ffa, 0x42b18001, 0x42d68000, 0x42ff8004);
    // 1x1 -> 2x2 is a constant image.
    CHECK_BITS(plane(run(grey({42}), 1, 1, plain(2)), 0, 2), 0x42280000, 0x42280000, 0x42280000, 0x42280000);
}

void test_channels_and_strides() {
    gear_trt::Preprocess pre = plain(2);
    pre.mean = {1.0f, 2.0f, 3.0f};
    const std::vector<std::uint8_t> rgb = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};  // 2x2
    const std::vector<float> ref = run(rgb, 2, 2, pre);
    CHECK(ref[0] == 9.0f && ref[4] == 18.0f && ref[8] == 27.0f);  // CHW planes, mean per channel
    std::vector<std::uint8_t> bgr = rgb;
    for (std::size_t i = 0; i < bgr.size(); i += 3) std::swap(bgr[i], bgr[i + 2]);
    std::vector<float> out(gear_trt::input_floats(pre));
    gear_trt::preprocess({bgr.data(), 2, 2, 3, 0, gear_trt::ColorOrder::BGR}, pre, out.data());
    CHECK(out == ref);
    // A BGR-trained model fed RGB images gets channels reversed.
    gear_trt::Preprocess bgr_model = pre;
    bgr_model.color = "BGR";
    gear_trt::preprocess({rgb.data(), 2, 2, 3, 0, gear_trt::ColorOrder::RGB}, bgr_model, out.data());
    CHECK(out[0] == 29.0f && out[4] == 18.0f && out[8] == 7.0f);
    // Padded rows (a cv::Mat ROI) give the same result as packed ones.
    std::vector<std::uint8_t> padded = {10, 20, 30, 40, 50, 60, 0, 0, 70, 80, 90, 100, 110, 120, 0, 0};
    gear_trt::preprocess({padded.data(), 2, 2, 3, 8, gear_trt::ColorOrder::RGB}, pre, out.data());
    CHECK(out == ref);

    using gear_trt::ImageView;
    CHECK_THROWS(gear_trt::preprocess(ImageView{rgb.data(), 2, 2, 4, 0, gear_trt::ColorOrder::RGB}, pre, out.data()), "4 channels, expected 3");
    CHECK_THROWS(gear_trt::preprocess(ImageView{rgb.data(), 2, 2, 1, 0, gear_trt::ColorOrder::RGB}, pre, out.data()), "1 channels");
    CHECK_THROWS(gear_trt::preprocess(ImageView{nullptr, 2, 2, 3, 0, gear_trt::ColorOrder::RGB}, pre, out.data()), "image is empty");
    CHECK_THROWS(gear_trt::preprocess(ImageView{rgb.data(), 0, 2, 3, 0, gear_trt::ColorOrder::RGB}, pre, out.data()), "image is empty");
    CHECK_THROWS(gear_trt::preprocess(ImageView{rgb.data(), 2, 2, 3, 5, gear_trt::ColorOrder::RGB}, pre, out.data()), "row stride 5");
    const ImageView good{rgb.data(), 2, 2, 3, 0, gear_trt::ColorOrder::RGB}, bad{rgb.data(), 2, 2, 4, 0, gear_trt::ColorOrder::RGB};
    CHECK(gear_trt::preprocess_batch({good, good}, pre).size() == 2 * gear_trt::input_floats(pre));
    CHECK_THROWS(gear_trt::preprocess_batch({good, bad}, pre), "image 1: image has 4 channels");
    CHECK_THROWS(gear_trt::preprocess_batch({}, pre), "no images");
}

void test_postprocess() {
    const float two[] = {0.0f, std::log(3.0f)};
    const auto p = gear_trt::softmax(two, 2);
    CHECK(std::fabs(p[0] - 0.25f) < 1e-6f && std::fabs(p[1] - 0.75f) < 1e-6f);
    const float big[] = {1000.0f, 1000.0f, -1000.0f};  // no overflow: exp(l - max)
    const auto q = gear_trt::softmax(big, 3);
    CHECK(q[0] == 0.5f && q[1] == 0.5f && q[2] == 0.0f);

    const float ties[] = {1.0f, 3.0f, 3.0f, -2.0f};
    CHECK((gear_trt::topk_indices(ties, 4, 3) == std::vector<int>{1, 2, 0}));
    const float zeros[] = {0.0f, -0.0f, 0.0f};
    CHECK((gear_trt::topk_indices(zeros, 3, 3) == std::vector<int>{0, 1, 2}));
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    const float with_nan[] = {nan, 1.0f, -inf, 1.0f};
    CHECK((gear_trt::topk_indices(with_nan, 4, 4) == std::vector<int>{1, 3, 2, 0}));
    CHECK_THROWS(gear_trt::topk_indices(ties, 4, 5), "top-k must be between 1 and the number of classes (4)");
    CHECK_THROWS(gear_trt::topk_indices(ties, 4, 0), "top-k");
    const auto top = gear_trt::classify_logits(ties, 4, 2, {"a", "b", "c", "d"});
    CHECK(top.size() == 2 && top[0].index == 1 && top[0].label == "b" && top[1].label == "c");
    CHECK(top[0].probability == top[1].probability && top[0].probability > 0.4f);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Every case of the table shared with the Python tests (tests/test_artifacts.py).
void test_compat(const std::string& cases_path) {
    using gear_trt::check_tensorrt_compat;
    CHECK(gear_trt::tensorrt_version_string(8502) == "8.5.2");
    CHECK(gear_trt::tensorrt_version_string(8602) == "8.6.2");
    CHECK(gear_trt::tensorrt_version_string(100300) == "10.3.0");
    CHECK(gear_trt::tensorrt_version_string(110401) == "11.4.1");
    CHECK_THROWS(check_tensorrt_compat(gear_trt::TensorRTInfo{}, {"10.3.0", "Orin", "8.7"}), "no 'tensorrt' section");

    const gear_trt::json::Value table = gear_trt::json::parse(read_file(cases_path));
    const gear_trt::json::Value* cases = table.find("cases");
    CHECK(cases != nullptr && cases->is_array() && cases->array.size() >= 20);
    if (cases == nullptr) return;
    for (const gear_trt::json::Value& c : cases->array) {
        ++g_checks;
        const std::string name = c.find("name")->string;
        const gear_trt::json::Value& rt = *c.find("runtime");
        const gear_trt::RuntimeInfo here{rt.find("version")->string, rt.find("gpu_name")->string, rt.find("compute_capability")->string};
        const gear_trt::json::Value* same = c.find("require_same_gpu");
        const gear_trt::json::Value* error = c.find("error");
        std::string got;
        try {
            check_tensorrt_compat(gear_trt::parse_tensorrt_section(*c.find("engine")), here, same == nullptr || same->boolean, "engine");
        } catch (const gear_trt::Error& e) {
            got = e.what();
        }
        const bool want_error = error != nullptr && error->is_string();
        if (want_error ? got.find(error->string) == std::string::npos : !got.empty()) {
            ++g_failures;
            std::cerr << "compat case '" << name << "': expected " << (want_error ? "an error with \"" + error->string + "\"" : "no error")
                      << ", got " << (got.empty() ? "none" : "\"" + got + "\"") << "\n";
        }
    }
}

void test_ppm() {
    const std::string path = "gear_trt_test_image.ppm";
    {
        std::ofstream out(path, std::ios::binary);
        out << "P6\n# a comment\n2 1\n255\n";
        const unsigned char px[] = {1, 2, 3, 250, 251, 252};
        out.write(reinterpret_cast<const char*>(px), sizeof px);
    }
    const gear_trt::Image img = gear_trt::read_ppm(path);
    CHECK(img.width == 2 && img.height == 1 && img.pixels.size() == 6 && img.pixels[3] == 250);
    {
        std::ofstream(path, std::ios::binary) << "P3\n2 1\n255\n1 2 3 4 5 6\n";
    }
    CHECK_THROWS(gear_trt::read_ppm(path), "not a binary PPM");
    {
        std::ofstream(path, std::ios::binary) << "P6\n2 1\n65535\n";
    }
    CHECK_THROWS(gear_trt::read_ppm(path), "only 8-bit");
    {
        std::ofstream(path, std::ios::binary) << "P6\n2 1\n255\nabc";
    }
    CHECK_THROWS(gear_trt::read_ppm(path), "truncated");
    CHECK_THROWS(gear_trt::read_raw_rgb(path, 4, 4), "needs 48");
    std::remove(path.c_str());
    CHECK_THROWS(gear_trt::read_ppm(path), "cannot open");
}

void test_sha256() {
    using gear_trt::sha256_hex;
    CHECK(sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";  // 56 bytes: padding spills
    CHECK(sha256_hex(two_blocks.data(), two_blocks.size()) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const std::string million(1000000, 'a');
    CHECK(sha256_hex(million.data(), million.size()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    const std::string path = "gear_trt_test_engine.bin";
    {
        std::ofstream(path, std::ios::binary) << "abc";
    }
    CHECK(gear_trt::sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    gear_trt::DeployMeta meta;
    gear_trt::verify_artifact_hash(path, meta);  // nothing recorded: nothing to check
    meta.engine_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    gear_trt::verify_artifact_hash(path, meta);
    meta.engine_sha256[0] = 'c';
    CHECK_THROWS(gear_trt::verify_artifact_hash(path, meta), "is not the file its sidecar describes");
    std::remove(path.c_str());
    CHECK_THROWS(gear_trt::sha256_file(path), "cannot open");
}

}  // namespace

#ifndef GEAR_TRT_COMPAT_CASES
#define GEAR_TRT_COMPAT_CASES "compat_cases.json"
#endif

int main(int argc, char** argv) {
    test_json();
    test_sidecar();
    test_sidecar_files();
    test_compute_capability();
    test_normalize_values();
    test_resize_values();
    test_channels_and_strides();
    test_postprocess();
    test_compat(argc > 1 ? argv[1] : GEAR_TRT_COMPAT_CASES);
    test_ppm();
    test_sha256();
    const int passed = g_checks - g_failures;
    std::cout << passed << " passed, " << g_failures << " failed\n";
    return g_failures == 0 ? 0 : 1;
}

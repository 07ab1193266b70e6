// gear_trt_dump: runs the C++ core on files so tests can compare it with the Python runtime.
//
//   gear_trt_dump meta <metadata.json>
//       parse and validate; print the fields, or one "error: ..." line and exit 2
//   gear_trt_dump preprocess <metadata.json> <out.f32> [--bgr] <H>x<W>:<image.rgb> ...
//       preprocess raw uint8 HWC images into one float32 NCHW file (native byte order)
//   gear_trt_dump topk <k> <num_classes> <logits.f32> <out.txt>
//       for each row of float32 logits: "i0 i1 ... | p0 p1 ..." (top-k indices, probabilities)
//   gear_trt_dump check <artifact>
//       load <artifact>'s sidecar and verify its engine_sha256, as the TensorRT backend does
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "gear_trt/deploy_meta.hpp"
#include "gear_trt/error.hpp"
#include "gear_trt/image_io.hpp"
#include "gear_trt/postprocess.hpp"
#include "gear_trt/preprocess.hpp"
#include "gear_trt/sha256.hpp"

namespace {

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw gear_trt::Error("cannot open " + path, "check the path");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_floats(const std::string& path, const std::vector<float>& values) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
    if (!out) throw gear_trt::Error("cannot write " + path);
}

int usage() {
    std::cerr << "usage: gear_trt_dump meta <metadata.json>\n"
                 "       gear_trt_dump preprocess <metadata.json> <out.f32> [--bgr] <H>x<W>:<image.rgb> ...\n"
                 "       gear_trt_dump topk <k> <num_classes> <logits.f32> <out.txt>\n"
                 "       gear_trt_dump check <artifact>\n";
    return 64;
}

int cmd_meta(const std::string& path) {
    const gear_trt::DeployMeta m = gear_trt::parse_deploy_meta(read_text(path), path);
    std::printf("format=%s\ninput_size=%d\n", m.format.c_str(), m.preprocess.input_size);
    std::printf("mean=%.9g,%.9g,%.9g\n", m.preprocess.mean[0], m.preprocess.mean[1], m.preprocess.mean[2]);
    std::printf("std=%.9g,%.9g,%.9g\n", m.preprocess.std[0], m.preprocess.std[1], m.preprocess.std[2]);
    std::printf("scale=%.9g\ncolor=%s\n", m.preprocess.scale, m.preprocess.color.c_str());
    std::printf("input_name=%s\noutput_name=%s\nprecision=%s\nnum_classes=%d\n", m.input_name.c_str(), m.output_name.c_str(),
                m.precision.c_str(), m.num_classes());
    std::string classes;
    for (const auto& c : m.classes) classes += (classes.empty() ? "" : ",") + c;
    std::printf("classes=%s\n", classes.c_str());
    if (m.tensorrt.present)
        std::printf("tensorrt.version=%s\ntensorrt.gpu_name=%s\ntensorrt.compute_capability=%s\n", m.tensorrt.version.c_str(),
                    m.tensorrt.gpu_name.c_str(), m.tensorrt.compute_capability.c_str());
    return 0;
}

int cmd_preprocess(int argc, char** argv) {
    const gear_trt::DeployMeta m = gear_trt::parse_deploy_meta(read_text(argv[0]), argv[0]);
    const std::string out_path = argv[1];
    gear_trt::ColorOrder order = gear_trt::ColorOrder::RGB;
    std::vector<gear_trt::Image> images;
    for (int i = 2; i < argc; ++i) {
        if (std::strcmp(argv[i], "--bgr") == 0) {
            order = gear_trt::ColorOrder::BGR;
            continue;
        }
        int h = 0, w = 0, consumed = 0;
        if (std::sscanf(argv[i], "%dx%d:%n", &h, &w, &consumed) != 2 || consumed == 0)
            throw gear_trt::Error(std::string("bad image argument '") + argv[i] + "'", "write <H>x<W>:<path>");
        images.push_back(gear_trt::read_raw_rgb(argv[i] + consumed, h, w));
    }
    std::vector<gear_trt::ImageView> views;
    for (const auto& img : images) {
        gear_trt::ImageView v = img.view();
        v.order = order;
        views.push_back(v);
    }
    write_floats(out_path, gear_trt::preprocess_batch(views, m.preprocess));
    return 0;
}

int cmd_topk(char** argv) {
    const int k = std::stoi(argv[0]), n = std::stoi(argv[1]);
    const std::string bytes = read_text(argv[2]);
    if (n <= 0 || bytes.size() % (sizeof(float) * static_cast<std::size_t>(n)) != 0)
        throw gear_trt::Error("logits file size is not a multiple of num_classes floats");
    std::vector<float> logits(bytes.size() / sizeof(float));
    std::memcpy(logits.data(), bytes.data(), bytes.size());
    std::ofstream out(argv[3]);
    char buf[64];
    for (std::size_t row = 0; row < logits.size() / static_cast<std::size_t>(n); ++row) {
        const auto top = gear_trt::classify_logits(logits.data() + row * static_cast<std::size_t>(n), n, k);
        for (const auto& t : top) out << t.index << ' ';
        out << '|';
        for (const auto& t : top) {
            std::snprintf(buf, sizeof buf, " %.9g", t.probability);
            out << buf;
        }
        out << '\n';
    }
    return out ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage();
    const std::string cmd = argv[1];
    try {
        if (cmd == "meta" && argc == 3) return cmd_meta(argv[2]);
        if (cmd == "preprocess" && argc >= 5) return cmd_preprocess(argc - 2, argv + 2);
        if (cmd == "topk" && argc == 6) return cmd_topk(argv + 2);
        if (cmd == "check" && argc == 3) {
            const gear_trt::DeployMeta m = gear_trt::load_sidecar(argv[2]);
            gear_trt::verify_artifact_hash(argv[2], m);
            std::printf("ok %s sha256=%s\n", argv[2], gear_trt::sha256_file(argv[2]).c_str());
            return 0;
        }
    } catch (const std::exception& e) {  // gear_trt::Error, or a bad number in the arguments
        std::cerr << "error: " << e.what() << '\n';
        return 2;
    }
    return usage();
}

// gear_trt_classify: classify images with a gear-trt TensorRT engine and print images/s.
//
//   gear_trt_classify model.engine image1.ppm [image2.ppm ...] [--top-k 3] [--repeat 100] [--bgr]
//
// The engine's sidecar (model.engine.json) supplies the preprocessing and the class names.
// Images are binary PPM (P6) so the example needs no image library; in an app, point an
// ImageView at your decoded frame instead (e.g. a cv::Mat: data, rows, cols, 3, step, BGR).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "gear_trt/error.hpp"
#include "gear_trt/image_io.hpp"
#include "gear_trt/trt_classifier.hpp"

int main(int argc, char** argv) {
    std::string engine_path;
    std::vector<std::string> image_paths;
    int k = 1, repeat = 20;
    gear_trt::ColorOrder order = gear_trt::ColorOrder::RGB;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--top-k" && i + 1 < argc) k = std::atoi(argv[++i]);
        else if (arg == "--repeat" && i + 1 < argc) repeat = std::atoi(argv[++i]);
        else if (arg == "--bgr") order = gear_trt::ColorOrder::BGR;
        else if (engine_path.empty()) engine_path = arg;
        else image_paths.push_back(arg);
    }
    if (engine_path.empty() || image_paths.empty()) {
        std::cerr << "usage: gear_trt_classify model.engine image.ppm [...] [--top-k K] [--repeat N] [--bgr]\n";
        return 64;
    }
    try {
        gear_trt::TrtClassifier model(engine_path);
        const gear_trt::RuntimeInfo& rt = model.runtime_info();
        std::printf("%s: TensorRT %s on %s (sm %s), input %dx%d, %d classes, max batch %d\n", engine_path.c_str(), rt.tensorrt_version.c_str(),
                    rt.gpu_name.c_str(), rt.compute_capability.c_str(), model.meta().preprocess.input_size, model.meta().preprocess.input_size,
                    model.meta().num_classes(), model.max_batch());

        std::vector<gear_trt::Image> images;
        for (const auto& p : image_paths) images.push_back(gear_trt::read_ppm(p));
        std::vector<gear_trt::ImageView> views;
        for (const auto& img : images) {
            gear_trt::ImageView v = img.view();
            v.order = order;
            views.push_back(v);
        }

        const auto results = model.classify(views, k);  // also the warm-up
        for (std::size_t i = 0; i < results.size(); ++i) {
            std::printf("%s:", image_paths[i].c_str());
            for (const auto& t : results[i]) std::printf(" %s %.3f", t.label.c_str(), t.probability);
            std::printf("\n");
        }

        // Throughput: preprocessing + inference + top-k, end to end.
        const auto start = std::chrono::steady_clock::now();
        for (int r = 0; r < repeat; ++r) model.classify(views, k);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (repeat > 0)
            std::printf("%zu images x %d: %.1f images/s end to end\n", views.size(), repeat, static_cast<double>(views.size()) * repeat / seconds);
    } catch (const gear_trt::Error& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 2;
    }
    return 0;
}

// Keep in step with gear_trt/runtime/preprocess.py: same operations, same order, float32.
// Built with -ffp-contract=off: a fused a*b+c would round once instead of twice and break the
// bit-for-bit match (GCC contracts by default on aarch64, i.e. on every Jetson).
#include "gear_trt/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "gear_trt/error.hpp"

namespace gear_trt {

namespace {

struct AxisWeights {
    std::vector<std::int64_t> i0, i1;
    std::vector<float> w0, w1;
};

// torch's CPU rule (area_pixel_compute_source_index + guard_index_and_lambda), in float32.
AxisWeights axis_weights(int in_size, int out_size) {
    AxisWeights a;
    a.i0.resize(out_size);
    a.i1.resize(out_size);
    a.w0.resize(out_size);
    a.w1.resize(out_size);
    const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
    for (int o = 0; o < out_size; ++o) {
        float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
        src = std::max(src, 0.0f);
        const std::int64_t i0 = std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(src)), in_size - 1);
        const float lambda = std::min(std::max(src - static_cast<float>(i0), 0.0f), 1.0f);
        a.i0[o] = i0;
        a.i1[o] = i0 < in_size - 1 ? i0 + 1 : i0;
        a.w0[o] = 1.0f - lambda;
        a.w1[o] = lambda;
    }
    return a;
}

void check_image(const ImageView& image) {
    if (image.channels != 3) {
        std::string fix = image.channels == 4   ? "drop the alpha channel (e.g. cv::cvtColor(img, img, cv::COLOR_BGRA2BGR))"
                          : image.channels == 1 ? "convert the grey image to 3 channels (e.g. cv::COLOR_GRAY2BGR)"
                                                : "pass an 8-bit image with 3 interleaved channels";
        throw Error("image has " + std::to_string(image.channels) + " channels, expected 3", fix);
    }
    if (image.data == nullptr || image.height <= 0 || image.width <= 0)
        throw Error("image is empty (" + std::to_string(image.height) + "x" + std::to_string(image.width) + ")",
                    "pass at least one image of at least 1x1 pixels");
    if (image.row_stride != 0 && image.row_stride < static_cast<std::size_t>(image.width) * 3)
        throw Error("image row stride " + std::to_string(image.row_stride) + " is smaller than width * 3",
                    "pass the row step in bytes (cv::Mat::step), or 0 for tightly packed rows");
}

}  // namespace

std::size_t input_floats(const Preprocess& pre) {
    return 3 * static_cast<std::size_t>(pre.input_size) * static_cast<std::size_t>(pre.input_size);
}

void resize_plane(const float* in, int in_h, int in_w, float* out, int out_h, int out_w) {
    const AxisWeights h = axis_weights(in_h, out_h);
    const AxisWeights w = axis_weights(in_w, out_w);
    for (int y = 0; y < out_h; ++y) {
        const float* top = in + h.i0[y] * in_w;
        const float* bottom = in + h.i1[y] * in_w;
        for (int x = 0; x < out_w; ++x) {
            // Along W first (each product and the sum rounded to float), then along H.
            const float t0 = top[w.i0[x]] * w.w0[x] + top[w.i1[x]] * w.w1[x];
            const float t1 = bottom[w.i0[x]] * w.w0[x] + bottom[w.i1[x]] * w.w1[x];
            out[static_cast<std::size_t>(y) * out_w + x] = t0 * h.w0[y] + t1 * h.w1[y];
        }
    }
}

void preprocess(const ImageView& image, const Preprocess& pre, float* out) {
    check_image(image);
    if (pre.input_size <= 0) throw Error("preprocess.input_size must be positive", "check the sidecar");
    const int size = pre.input_size;
    const std::size_t stride = image.row_stride ? image.row_stride : static_cast<std::size_t>(image.width) * 3;
    const bool model_bgr = pre.color == "BGR";
    const bool image_bgr = image.order == ColorOrder::BGR;
    const std::size_t in_plane = static_cast<std::size_t>(image.height) * image.width;
    const std::size_t out_plane = static_cast<std::size_t>(size) * size;
    const bool resize = image.height != size || image.width != size;

    std::vector<float> pixels(resize ? in_plane : 0), resized(resize ? out_plane : 0);
    for (int c = 0; c < 3; ++c) {
        // Model channel c comes from image channel c, or 2 - c when the orders differ.
        const int src_c = model_bgr == image_bgr ? c : 2 - c;
        float* plane = out + c * out_plane;
        float* target = resize ? pixels.data() : plane;  // raw pixel values as float
        for (int y = 0; y < image.height; ++y) {
            const std::uint8_t* row = image.data + y * stride;
            for (int x = 0; x < image.width; ++x) target[static_cast<std::size_t>(y) * image.width + x] = static_cast<float>(row[x * 3 + src_c]);
        }
        if (resize) {
            resize_plane(pixels.data(), image.height, image.width, resized.data(), size, size);
            std::copy(resized.begin(), resized.end(), plane);
        }
        const float mean = pre.mean[c], std = pre.std[c], scale = pre.scale;
        for (std::size_t i = 0; i < out_plane; ++i) plane[i] = (plane[i] * scale - mean) / std;
    }
}

std::vector<float> preprocess_batch(const std::vector<ImageView>& images, const Preprocess& pre) {
    if (images.empty()) throw Error("no images given", "pass at least one image");
    const std::size_t per_image = input_floats(pre);
    std::vector<float> out(per_image * images.size());
    for (std::size_t i = 0; i < images.size(); ++i) {
        try {
            preprocess(images[i], pre, out.data() + i * per_image);
        } catch (const Error& e) {
            throw Error("image " + std::to_string(i) + ": " + e.message(), e.fix());
        }
    }
    return out;
}

}  // namespace gear_trt

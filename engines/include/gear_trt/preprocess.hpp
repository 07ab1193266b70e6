// The deploy-metadata preprocessing rule, identical to gear_trt/runtime/preprocess.py:
//   uint8 RGB image (HWC) -> [bilinear resize to input_size, half-pixel centres, no antialias,
//   when H or W differ] -> (pixel * scale - mean[c]) / std[c] -> float32 CHW.
// Every float32 operation happens in the same order as numpy/torch, and the library is built
// with -ffp-contract=off (no fused multiply-add), so the output is bit-identical to Python's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gear_trt/deploy_meta.hpp"

namespace gear_trt {

enum class ColorOrder { RGB, BGR };

// A borrowed view of an 8-bit, 3-channel, interleaved (HWC) image, e.g. a decoded JPEG or a
// camera frame (cv::Mat: data, rows, cols, channels(), step).
struct ImageView {
    const std::uint8_t* data = nullptr;
    int height = 0;
    int width = 0;
    int channels = 3;
    std::size_t row_stride = 0;  // bytes from one row to the next; 0 means width * channels
    ColorOrder order = ColorOrder::RGB;
};

// Number of floats preprocess() writes for one image: 3 * input_size * input_size.
std::size_t input_floats(const Preprocess& pre);

// Preprocesses one image into `out` (input_floats(pre) floats, CHW). Throws gear_trt::Error on
// a null, empty or non-3-channel image.
void preprocess(const ImageView& image, const Preprocess& pre, float* out);

// Preprocesses a batch into one NCHW buffer (images may have different sizes).
std::vector<float> preprocess_batch(const std::vector<ImageView>& images, const Preprocess& pre);

// Bilinear resize of one float32 plane (torch's half-pixel rule), exposed for tests.
void resize_plane(const float* in, int in_h, int in_w, float* out, int out_h, int out_w);

}  // namespace gear_trt

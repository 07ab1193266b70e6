// Minimal image loading for the examples and tools: binary PPM (P6, 8-bit) and raw HWC uint8.
// The runtime itself takes ImageView, so apps decode with whatever they already use
// (OpenCV, libjpeg-turbo, a camera driver); JPEG decoding is deliberately not in the core.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gear_trt/preprocess.hpp"

namespace gear_trt {

struct Image {
    int height = 0;
    int width = 0;
    std::vector<std::uint8_t> pixels;  // HWC, RGB

    ImageView view() const { return ImageView{pixels.data(), height, width, 3, 0, ColorOrder::RGB}; }
};

// Reads a binary PPM (P6, maxval 255); throws gear_trt::Error on anything else.
Image read_ppm(const std::string& path);

// Reads height*width*3 bytes of raw RGB HWC pixels; the file size must match exactly.
Image read_raw_rgb(const std::string& path, int height, int width);

}  // namespace gear_trt

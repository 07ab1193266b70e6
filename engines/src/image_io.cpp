#include "gear_trt/image_io.hpp"

#include <cctype>
#include <fstream>
#include <iterator>

#include "gear_trt/error.hpp"

namespace gear_trt {

namespace {

std::vector<std::uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot open " + path, "check the path");
    return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

Image read_ppm(const std::string& path) {
    const std::vector<std::uint8_t> bytes = read_bytes(path);
    std::size_t pos = 0;
    auto fail = [&path](const std::string& what) -> Error {
        return Error(path + ": " + what, "convert the image to binary 8-bit PPM, e.g. `convert in.jpg out.ppm` or PIL's Image.save('out.ppm')");
    };
    auto skip_space_and_comments = [&]() {
        for (;;) {
            while (pos < bytes.size() && std::isspace(bytes[pos])) ++pos;
            if (pos < bytes.size() && bytes[pos] == '#') {
                while (pos < bytes.size() && bytes[pos] != '\n') ++pos;
            } else {
                return;
            }
        }
    };
    auto read_int = [&]() -> long {
        skip_space_and_comments();
        if (pos >= bytes.size() || !std::isdigit(bytes[pos])) throw fail("malformed PPM header");
        long v = 0;
        while (pos < bytes.size() && std::isdigit(bytes[pos])) {
            v = v * 10 + (bytes[pos++] - '0');
            if (v > 1 << 20) throw fail("PPM dimension too large");
        }
        return v;
    };
    if (bytes.size() < 2 || bytes[0] != 'P' || bytes[1] != '6') throw fail("not a binary PPM (P6) file");
    pos = 2;
    const long width = read_int(), height = read_int(), maxval = read_int();
    if (width <= 0 || height <= 0) throw fail("PPM has an empty image");
    if (maxval != 255) throw fail("PPM maxval is " + std::to_string(maxval) + ", only 8-bit (255) is supported");
    if (pos >= bytes.size() || !std::isspace(bytes[pos])) throw fail("malformed PPM header");
    ++pos;  // the single whitespace before the pixels
    const std::size_t need = static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3;
    if (bytes.size() - pos < need) throw fail("PPM is truncated");
    Image img;
    img.height = static_cast<int>(height);
    img.width = static_cast<int>(width);
    img.pixels.assign(bytes.begin() + static_cast<long>(pos), bytes.begin() + static_cast<long>(pos + need));
    return img;
}

Image read_raw_rgb(const std::string& path, int height, int width) {
    if (height <= 0 || width <= 0) throw Error("raw image size must be positive, got " + std::to_string(height) + "x" + std::to_string(width));
    Image img;
    img.height = height;
    img.width = width;
    img.pixels = read_bytes(path);
    const std::size_t need = static_cast<std::size_t>(height) * static_cast<std::size_t>(width) * 3;
    if (img.pixels.size() != need)
        throw Error(path + ": has " + std::to_string(img.pixels.size()) + " bytes, a " + std::to_string(height) + "x" + std::to_string(width) +
                        "x3 image needs " + std::to_string(need),
                    "pass the image's real height and width");
    return img;
}

}  // namespace gear_trt

#include "gear_trt/postprocess.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "gear_trt/error.hpp"

namespace gear_trt {

std::vector<float> softmax(const float* logits, int n) {
    std::vector<float> p(static_cast<std::size_t>(std::max(n, 0)));
    if (n <= 0) return p;
    float max = logits[0];
    for (int i = 1; i < n; ++i) max = std::max(max, logits[i]);
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) {
        p[i] = std::exp(logits[i] - max);
        sum += p[i];
    }
    for (float& v : p) v /= sum;
    return p;
}

std::vector<int> topk_indices(const float* logits, int n, int k) {
    if (k < 1 || k > n)
        throw Error("top-k must be between 1 and the number of classes (" + std::to_string(n) + "), got " + std::to_string(k), "pass a smaller k");
    std::vector<int> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    // "a before b": a larger, or b is NaN and a is not. stable_sort keeps index order for ties
    // (and among NaNs), like numpy's stable argsort of -logits.
    auto better = [logits](int a, int b) {
        const float x = logits[a], y = logits[b];
        if (std::isnan(x)) return false;
        if (std::isnan(y)) return true;
        return x > y;
    };
    std::stable_sort(order.begin(), order.end(), better);
    order.resize(static_cast<std::size_t>(k));
    return order;
}

std::vector<TopK> classify_logits(const float* logits, int n, int k, const std::vector<std::string>& classes) {
    const std::vector<int> idx = topk_indices(logits, n, k);
    const std::vector<float> p = softmax(logits, n);
    std::vector<TopK> out;
    out.reserve(idx.size());
    for (int i : idx) out.push_back({i, p[i], i < static_cast<int>(classes.size()) ? classes[i] : std::string()});
    return out;
}

}  // namespace gear_trt

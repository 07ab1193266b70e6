// Logits -> softmax probabilities and top-k, as gear_trt/runtime/postprocess.py.
// Top-k ranks the logits: higher first, equal values by lower class index, NaN last, so both
// runtimes return the same indices for the same logits.
#pragma once

#include <string>
#include <vector>

namespace gear_trt {

struct TopK {
    int index = 0;             // class index
    float probability = 0.0f;  // softmax probability
    std::string label;         // class name ("" when no names were given)
};

// Softmax of one row of `n` logits in float32: exp(l - max) / sum.
std::vector<float> softmax(const float* logits, int n);

// Indices of the k largest logits, best first (stable: ties keep the lower index first).
std::vector<int> topk_indices(const float* logits, int n, int k);

// Top-k of one row with probabilities and names; k is checked against n.
std::vector<TopK> classify_logits(const float* logits, int n, int k, const std::vector<std::string>& classes = {});

}  // namespace gear_trt

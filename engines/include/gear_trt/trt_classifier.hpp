// TensorRT backend: load a gear-trt engine (with its sidecar) and classify uint8 images.
// Works with TensorRT 8.5 (JetPack 5) through 11: name-based I/O, setTensorAddress, enqueueV3.
// TensorRT and CUDA headers stay out of this header (pimpl): an app includes only gear_trt.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gear_trt/compat.hpp"
#include "gear_trt/deploy_meta.hpp"
#include "gear_trt/postprocess.hpp"
#include "gear_trt/preprocess.hpp"

namespace gear_trt {

class TrtClassifier {
public:
    struct Options {
        int device = 0;                // CUDA device ordinal
        bool require_same_gpu = true;  // also compare the GPU name, not just the compute capability
    };

    // Reads <engine>.json, checks its TensorRT version and GPU against this machine, then
    // deserializes the engine and checks its I/O tensors against the metadata. Throws
    // gear_trt::Error with the reason and the fix on any mismatch.
    explicit TrtClassifier(const std::string& engine_path);
    TrtClassifier(const std::string& engine_path, const Options& options);
    ~TrtClassifier();
    TrtClassifier(const TrtClassifier&) = delete;
    TrtClassifier& operator=(const TrtClassifier&) = delete;

    const DeployMeta& meta() const;
    const RuntimeInfo& runtime_info() const;
    int max_batch() const;  // images per enqueue (larger batches are split)

    // float32 NCHW input (batch * 3 * S * S) -> float32 logits (batch * num_classes).
    std::vector<float> infer(const float* input, int batch);

    // Preprocess (the metadata's rule), infer, then top-k per image.
    std::vector<std::vector<TopK>> classify(const std::vector<ImageView>& images, int k = 1);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace gear_trt

// TensorRT backend. Only name-based APIs present from TensorRT 8.5 to 11 are used:
// getNbIOTensors/getIOTensorName/getTensorIOMode/getTensorDataType/getTensorShape,
// getProfileShape(name, 0, kMAX), setInputShape, setTensorAddress, enqueueV3.
#include "gear_trt/trt_classifier.hpp"

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <mutex>

#include "gear_trt/error.hpp"
#include "gear_trt/sha256.hpp"

namespace gear_trt {

namespace {

class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity > Severity::kWARNING) return;
        std::lock_guard<std::mutex> lock(mutex_);
        if (severity <= Severity::kERROR) last_error_ = msg;
        std::fprintf(stderr, "[TensorRT] %s\n", msg);
    }
    std::string last_error() {
        std::lock_guard<std::mutex> lock(mutex_);
        return last_error_;
    }

private:
    std::mutex mutex_;
    std::string last_error_;
};

void cuda_check(cudaError_t status, const char* what) {
    if (status != cudaSuccess)
        throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status), "check the GPU and the CUDA driver (nvidia-smi / tegrastats)");
}

struct DeviceBuffer {
    void* ptr = nullptr;
    ~DeviceBuffer() {
        if (ptr) cudaFree(ptr);
    }
    void allocate(std::size_t bytes) {
        cuda_check(cudaMalloc(&ptr, bytes), "cudaMalloc");
    }
};

RuntimeInfo query_runtime(int device) {
    int count = 0;
    cuda_check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    if (device < 0 || device >= count)
        throw Error("CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) + " found)", "pick an existing device");
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    RuntimeInfo info;
    info.tensorrt_version = tensorrt_version_string(static_cast<long>(getInferLibVersion()));
    info.gpu_name = prop.name;
    info.compute_capability = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    return info;
}

std::string dims_string(const nvinfer1::Dims& d) {
    std::string s = "[";
    for (int i = 0; i < d.nbDims; ++i) s += (i ? ", " : "") + std::to_string(d.d[i]);
    return s + "]";
}

}  // namespace

struct TrtClassifier::Impl {
    DeployMeta meta;
    RuntimeInfo runtime_info;
    Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    cudaStream_t stream = nullptr;
    DeviceBuffer input, output;
    int device = 0;
    int max_batch = 1;
    bool dynamic = false;
    std::string where;

    ~Impl() {
        context.reset();  // TensorRT objects before the stream and buffers
        engine.reset();
        runtime.reset();
        if (stream) cudaStreamDestroy(stream);
    }
};

TrtClassifier::TrtClassifier(const std::string& engine_path) : TrtClassifier(engine_path, Options{}) {}

TrtClassifier::TrtClassifier(const std::string& engine_path, const Options& options) : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.where = engine_path;
    m.device = options.device;
    m.meta = load_sidecar(engine_path);
    if (m.meta.backend == "onnxruntime")
        throw Error(engine_path + ": the sidecar says this model is for onnxruntime, not TensorRT", "build a TensorRT engine with `gear-trt build-engine` on this device");
    verify_artifact_hash(engine_path, m.meta);  // the sidecar belongs to this very file
    cuda_check(cudaSetDevice(m.device), "cudaSetDevice");
    m.runtime_info = query_runtime(m.device);
    // Our clear message before TensorRT's own deserialization assertion.
    check_tensorrt_compat(m.meta.tensorrt, m.runtime_info, options.require_same_gpu, engine_path);

    std::ifstream in(engine_path, std::ios::binary);
    if (!in) throw Error("cannot open engine " + engine_path, "check the path");
    const std::vector<char> blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    m.runtime.reset(nvinfer1::createInferRuntime(m.logger));
    if (!m.runtime) throw Error("TensorRT could not create a runtime: " + m.logger.last_error(), "check the TensorRT installation");
#if NV_TENSORRT_MAJOR > 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR >= 6)
    // A version-compatible plan carries its own lean runtime, which runs only if host code is allowed:
    // allowed for such plans alone, as the Python runner does (gear_trt/backends/tensorrt.py).
    m.runtime->setEngineHostCodeAllowed(m.meta.tensorrt.version_compatible);
#endif
    m.engine.reset(m.runtime->deserializeCudaEngine(blob.data(), blob.size()));
    if (!m.engine)
        throw Error(engine_path + ": TensorRT could not deserialize the engine: " + m.logger.last_error(),
                    "rebuild the engine on this device with `gear-trt build-engine`");

    // Name-based I/O, checked against the metadata.
    const char* in_name = m.meta.input_name.c_str();
    const char* out_name = m.meta.output_name.c_str();
    bool has_in = false, has_out = false;
    std::string names;
    for (int i = 0; i < m.engine->getNbIOTensors(); ++i) {
        const std::string name = m.engine->getIOTensorName(i);
        names += (names.empty() ? "" : ", ") + name;
        const bool is_input = m.engine->getTensorIOMode(name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
        has_in = has_in || (is_input && name == m.meta.input_name);
        has_out = has_out || (!is_input && name == m.meta.output_name);
    }
    if (!has_in || !has_out)
        throw Error(engine_path + ": the engine's tensors are [" + names + "], the metadata names input '" + m.meta.input_name + "' and output '" +
                        m.meta.output_name + "'",
                    "rebuild the engine from the ONNX file whose metadata it carries");
    for (const char* name : {in_name, out_name})
        if (m.engine->getTensorDataType(name) != nvinfer1::DataType::kFLOAT)
            throw Error(engine_path + ": tensor '" + name + "' is not float32", "rebuild the engine with float32 inputs and outputs");
    const nvinfer1::Dims shape = m.engine->getTensorShape(in_name);
    const int s = m.meta.preprocess.input_size;
    if (shape.nbDims != 4 || shape.d[1] != 3 || shape.d[2] != s || shape.d[3] != s)
        throw Error(engine_path + ": engine input shape " + dims_string(shape) + " does not match the metadata's [-1, 3, " + std::to_string(s) + ", " +
                        std::to_string(s) + "]",
                    "rebuild the engine from the matching ONNX file");
    m.dynamic = shape.d[0] == -1;
    m.max_batch = m.dynamic ? static_cast<int>(m.engine->getProfileShape(in_name, 0, nvinfer1::OptProfileSelector::kMAX).d[0])
                            : static_cast<int>(shape.d[0]);
    if (m.max_batch < 1) throw Error(engine_path + ": the engine accepts no batch size", "rebuild the engine");
    const nvinfer1::Dims out_shape = m.engine->getTensorShape(out_name);
    if (out_shape.nbDims != 2 || (out_shape.d[1] != -1 && out_shape.d[1] != m.meta.num_classes()))
        throw Error(engine_path + ": engine output shape " + dims_string(out_shape) + ", the metadata lists " + std::to_string(m.meta.num_classes()) +
                        " classes",
                    "rebuild the engine from the matching ONNX file");

    m.context.reset(m.engine->createExecutionContext());
    if (!m.context) throw Error(engine_path + ": TensorRT could not create an execution context: " + m.logger.last_error(), "free GPU memory and retry");
    cuda_check(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    m.input.allocate(sizeof(float) * input_floats(m.meta.preprocess) * static_cast<std::size_t>(m.max_batch));
    m.output.allocate(sizeof(float) * static_cast<std::size_t>(m.meta.num_classes()) * static_cast<std::size_t>(m.max_batch));
}

TrtClassifier::~TrtClassifier() = default;

const DeployMeta& TrtClassifier::meta() const { return impl_->meta; }
const RuntimeInfo& TrtClassifier::runtime_info() const { return impl_->runtime_info; }
int TrtClassifier::max_batch() const { return impl_->max_batch; }

std::vector<float> TrtClassifier::infer(const float* input, int batch) {
    Impl& m = *impl_;
    if (input == nullptr || batch < 1) throw Error("infer() needs at least one input image", "pass batch >= 1");
    cuda_check(cudaSetDevice(m.device), "cudaSetDevice");
    const std::size_t per_image = input_floats(m.meta.preprocess);
    const std::size_t classes = static_cast<std::size_t>(m.meta.num_classes());
    std::vector<float> logits(classes * static_cast<std::size_t>(batch));
    const char* in_name = m.meta.input_name.c_str();
    const char* out_name = m.meta.output_name.c_str();
    for (int start = 0; start < batch; start += m.max_batch) {
        const int n = std::min(m.max_batch, batch - start);
        const int run = m.dynamic ? n : m.max_batch;  // a fixed-batch engine gets zero padding
        if (!m.dynamic && n < run)
            cuda_check(cudaMemsetAsync(m.input.ptr, 0, sizeof(float) * per_image * static_cast<std::size_t>(run), m.stream), "cudaMemsetAsync");
        cuda_check(cudaMemcpyAsync(m.input.ptr, input + static_cast<std::size_t>(start) * per_image, sizeof(float) * per_image * static_cast<std::size_t>(n),
                                   cudaMemcpyHostToDevice, m.stream),
                   "cudaMemcpyAsync (input)");
        if (m.dynamic) {
            nvinfer1::Dims dims;
            dims.nbDims = 4;
            dims.d[0] = run;
            dims.d[1] = 3;
            dims.d[2] = dims.d[3] = m.meta.preprocess.input_size;
            if (!m.context->setInputShape(in_name, dims))
                throw Error(m.where + ": TensorRT rejected input shape " + dims_string(dims) + ": " + m.logger.last_error(), "use a batch within the engine's profile");
        }
        if (!m.context->setTensorAddress(in_name, m.input.ptr) || !m.context->setTensorAddress(out_name, m.output.ptr))
            throw Error(m.where + ": TensorRT rejected a tensor address: " + m.logger.last_error(), "rebuild the engine");
        if (!m.context->enqueueV3(m.stream))
            throw Error(m.where + ": TensorRT failed to run the engine: " + m.logger.last_error(), "rebuild the engine on this device");
        cuda_check(cudaMemcpyAsync(logits.data() + static_cast<std::size_t>(start) * classes, m.output.ptr, sizeof(float) * classes * static_cast<std::size_t>(n),
                                   cudaMemcpyDeviceToHost, m.stream),
                   "cudaMemcpyAsync (output)");
        cuda_check(cudaStreamSynchronize(m.stream), "cudaStreamSynchronize");
    }
    return logits;
}

std::vector<std::vector<TopK>> TrtClassifier::classify(const std::vector<ImageView>& images, int k) {
    const std::vector<float> input = preprocess_batch(images, impl_->meta.preprocess);
    const int n = static_cast<int>(images.size());
    const int classes = impl_->meta.num_classes();
    if (k < 1 || k > classes)  // before any GPU work
        throw Error("top-k must be between 1 and the number of classes (" + std::to_string(classes) + "), got " + std::to_string(k), "pass a smaller k");
    const std::vector<float> logits = infer(input.data(), n);
    std::vector<std::vector<TopK>> out;
    out.reserve(images.size());
    for (int i = 0; i < n; ++i) out.push_back(classify_logits(logits.data() + static_cast<std::size_t>(i) * classes, classes, k, impl_->meta.classes));
    return out;
}

}  // namespace gear_trt

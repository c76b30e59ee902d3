// Finds and dlopens libonnxruntime, initialises the ORT API, creates sessions per provider.
#include "ort_loader.h"

#include <dlfcn.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "ops/attention_op.h"

namespace edgespec {
namespace {

std::mutex g_mutex;         // guards the fields below
void* g_handle = nullptr;   // dlopen handle of libonnxruntime (never closed)
std::string g_version;      // GetVersionString() of the loaded library
std::string g_path;         // the path that was loaded
Ort::Env* g_env = nullptr;  // leaked on purpose (see ort_loader.h)

using GetApiBaseFn = const OrtApiBase* (*)();

void* open_library(const std::string& path, std::string* tried) {
  std::vector<std::string> names;
  if (path.empty()) {
    names = {"libonnxruntime.so", "libonnxruntime.so.1"};
  } else {
    names = {path};
  }
  for (const std::string& name : names) {
    dlerror();
    if (void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      *tried = name;
      return h;
    }
    const char* err = dlerror();
    *tried += (tried->empty() ? "" : "; ") + name + ": " + (err ? err : "unknown dlopen error");
  }
  return nullptr;
}

}  // namespace

void load_runtime(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_handle != nullptr) return;  // once per process; later calls are no-ops
  std::string tried;
  void* handle = open_library(path, &tried);
  if (handle == nullptr) {
    throw std::runtime_error("cannot load libonnxruntime (" + tried + ")");
  }
  auto get_base = reinterpret_cast<GetApiBaseFn>(dlsym(handle, "OrtGetApiBase"));
  if (get_base == nullptr) {
    dlclose(handle);
    throw std::runtime_error("'" + tried + "' has no symbol OrtGetApiBase: not an ONNX Runtime");
  }
  const OrtApiBase* base = get_base();
  const char* lib_version = base->GetVersionString();
  const OrtApi* api = base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    std::string v = lib_version ? lib_version : "?";
    dlclose(handle);
    throw std::runtime_error("libonnxruntime '" + tried + "' (version " + v +
                             ") does not provide ORT API version " +
                             std::to_string(ORT_API_VERSION) +
                             " required by edgespec's headers: install onnxruntime >= 1." +
                             std::to_string(ORT_API_VERSION));
  }
  Ort::InitApi(api);
  g_handle = handle;
  g_path = tried;
  g_version = lib_version ? lib_version : "";
}

std::string runtime_version() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_version;
}

std::vector<std::string> available_providers() {
  ort::require_loaded();
  return Ort::GetAvailableProviders();
}

namespace ort {

void require_loaded() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_handle == nullptr) {
    throw std::runtime_error("ONNX Runtime is not loaded: call edgespec._native.load_runtime()");
  }
}

Ort::Env& env(int threads) {
  require_loaded();
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_env == nullptr) {
    Ort::ThreadingOptions pools;
    pools.SetGlobalIntraOpNumThreads(threads > 0 ? threads : 0);
    pools.SetGlobalInterOpNumThreads(1);
    g_env = new Ort::Env(pools, ORT_LOGGING_LEVEL_ERROR, "edgespec");
  }
  return *g_env;
}

namespace {

// Session options shared by every provider: full graph optimisation, sequential execution,
// edgespec's custom ops (ops/attention_op.h) available to the graph.
Ort::SessionOptions base_options(const ProviderSpec& prov, bool shared_threads) {
  Ort::SessionOptions opts;
  opts.Add(ops::domain());
  opts.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  opts.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
  if (shared_threads) {
    opts.DisablePerSessionThreads();  // the environment's global pool
  } else {
    if (prov.threads > 0) opts.SetIntraOpNumThreads(prov.threads);
    opts.SetInterOpNumThreads(1);
  }
  return opts;
}

// Converts an OrtStatus into an Ort::Exception (and releases it).
void check(OrtStatus* status) {
  if (status != nullptr) {
    Ort::Status s(status);
    throw Ort::Exception(s.GetErrorMessage(), s.GetErrorCode());
  }
}

void append_cuda(Ort::SessionOptions& opts, const ProviderSpec& prov) {
  const OrtApi& api = Ort::GetApi();
  OrtCUDAProviderOptionsV2* raw = nullptr;
  check(api.CreateCUDAProviderOptions(&raw));
  std::unique_ptr<OrtCUDAProviderOptionsV2, decltype(api.ReleaseCUDAProviderOptions)> cuda(
      raw, api.ReleaseCUDAProviderOptions);
  const std::string device = std::to_string(prov.device_id);
  const char* keys[] = {"device_id"};
  const char* values[] = {device.c_str()};
  check(api.UpdateCUDAProviderOptions(cuda.get(), keys, values, 1));
  opts.AppendExecutionProvider_CUDA_V2(*cuda);
}

void append_tensorrt(Ort::SessionOptions& opts, const ProviderSpec& prov) {
  const OrtApi& api = Ort::GetApi();
  OrtTensorRTProviderOptionsV2* raw = nullptr;
  check(api.CreateTensorRTProviderOptions(&raw));
  std::unique_ptr<OrtTensorRTProviderOptionsV2, decltype(api.ReleaseTensorRTProviderOptions)> trt(
      raw, api.ReleaseTensorRTProviderOptions);
  const std::string device = std::to_string(prov.device_id);
  const bool cache = !prov.trt_cache_dir.empty();
  std::vector<const char*> keys = {"device_id", "trt_fp16_enable", "trt_engine_cache_enable"};
  std::vector<const char*> values = {device.c_str(), "1", cache ? "1" : "0"};
  if (cache) {
    keys.push_back("trt_engine_cache_path");
    values.push_back(prov.trt_cache_dir.c_str());
  }
  check(api.UpdateTensorRTProviderOptions(trt.get(), keys.data(), values.data(), keys.size()));
  opts.AppendExecutionProvider_TensorRT_V2(*trt);
  // TensorRT hands unsupported nodes to CUDA, then CPU.
  append_cuda(opts, prov);
}

}  // namespace

Ort::Session open_session(const std::string& path, const ProviderSpec& prov, std::string* used,
                          bool shared_threads) {
  const std::string& name = prov.name;
  if (name != "cpu" && name != "cuda" && name != "tensorrt") {
    throw std::invalid_argument("unknown provider '" + name +
                                "' (expected 'cpu', 'cuda' or 'tensorrt')");
  }
  Ort::Env& e = env(prov.threads);
  if (name != "cpu") {
    try {
      Ort::SessionOptions opts = base_options(prov, shared_threads);
      if (name == "cuda") append_cuda(opts, prov);
      if (name == "tensorrt") append_tensorrt(opts, prov);
      Ort::Session session(e, path.c_str(), opts);
      *used = name;
      return session;
    } catch (const Ort::Exception& err) {
      if (!prov.allow_fallback) {
        throw std::runtime_error("execution provider '" + name + "' failed for '" + path +
                                 "': " + err.what() +
                                 " (ProviderSpec.allow_fallback runs it on the CPU instead)");
      }
    }
  }
  try {
    Ort::SessionOptions opts = base_options(prov, shared_threads);
    Ort::Session session(e, path.c_str(), opts);
    *used = "cpu";
    return session;
  } catch (const Ort::Exception& err) {
    throw std::runtime_error("cannot open model '" + path + "': " + err.what());
  }
}

}  // namespace ort
}  // namespace edgespec

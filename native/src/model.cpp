// One ONNX decoder with IO binding set up once (see model.h and docs/bundle-format.md).
#include "model.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>

#include "ort_loader.h"

namespace edgespec {
namespace {

std::string layer_name(const std::string& pattern, int layer) {
  std::string out = pattern;
  const std::string key = "{layer}";
  const size_t at = out.find(key);
  if (at == std::string::npos) {
    throw std::invalid_argument("I/O name pattern '" + pattern + "' lacks '{layer}'");
  }
  return out.replace(at, key.size(), std::to_string(layer));
}

ONNXTensorElementDataType float_type(const std::string& dtype, const char* what) {
  if (dtype == "float32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  if (dtype == "float16") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
  throw std::invalid_argument(std::string(what) + " '" + dtype +
                              "' is not supported (expected float32 or float16)");
}

// Element type and shape (-1 = symbolic) of one graph input or output.
struct IoInfo {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> shape;
};
using IoMap = std::map<std::string, IoInfo>;

// name → element type and shape of every input (or output) of the session.
IoMap io_types(const Ort::Session& s, bool inputs) {
  IoMap out;
  Ort::AllocatorWithDefaultOptions alloc;
  const size_t count = inputs ? s.GetInputCount() : s.GetOutputCount();
  for (size_t i = 0; i < count; ++i) {
    auto name = inputs ? s.GetInputNameAllocated(i, alloc) : s.GetOutputNameAllocated(i, alloc);
    Ort::TypeInfo info = inputs ? s.GetInputTypeInfo(i) : s.GetOutputTypeInfo(i);
    IoInfo& io = out[name.get()];
    if (info.GetONNXType() == ONNX_TYPE_TENSOR) {
      auto tensor = info.GetTensorTypeAndShapeInfo();
      io.type = tensor.GetElementType();
      io.shape = tensor.GetShape();
    }
  }
  return out;
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    out += (i ? ", " : "") + (dims[i] < 0 ? std::string("?") : std::to_string(dims[i]));
  }
  return out + "]";
}

// The graph's static dims must equal the manifest's (`want`: -1 = any); symbolic ones pass.
void expect_dims(const IoMap& io, const std::string& name, const std::vector<int64_t>& want,
                 const char* kind, const std::string& model) {
  const std::vector<int64_t>& got = io.at(name).shape;
  bool ok = got.size() == want.size();
  for (size_t i = 0; ok && i < got.size(); ++i) ok = got[i] < 0 || want[i] < 0 || got[i] == want[i];
  if (!ok) {
    throw std::runtime_error("model '" + model + "' " + kind + " '" + name + "' has shape " +
                             dims_str(got) + ", the manifest implies " + dims_str(want));
  }
}

void expect_io(const IoMap& io, const std::string& name, ONNXTensorElementDataType type,
               const char* kind, const std::string& model) {
  auto it = io.find(name);
  if (it == io.end()) {
    std::string names;
    for (const auto& kv : io) names += (names.empty() ? "" : ", ") + kv.first;
    throw std::runtime_error("model '" + model + "' has no " + kind + " '" + name +
                             "' (it has: " + names + ")");
  }
  if (it->second.type != type) {
    throw std::runtime_error("model '" + model + "' " + kind + " '" + name + "' has element type " +
                             std::to_string(it->second.type) + ", the manifest implies " +
                             std::to_string(type));
  }
}

// The optional float32 [1, n, hidden_size] features input and hidden_states output.
void check_feature_io(const IoMap& inputs, const IoMap& outputs, const ModelSpec& spec) {
  const auto f32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  const std::vector<int64_t> dims = {1, -1, spec.hidden_size};
  if (!spec.features.empty()) {
    expect_io(inputs, spec.features, f32, "input", spec.path);
    expect_dims(inputs, spec.features, dims, "input", spec.path);
  }
  if (!spec.hidden_states.empty()) {
    expect_io(outputs, spec.hidden_states, f32, "output", spec.path);
    expect_dims(outputs, spec.hidden_states, dims, "output", spec.path);
  }
}

}  // namespace

Model::Model(const ModelSpec& spec, const ProviderSpec& provider, int max_width, int prefill_width,
             bool shared_threads)
    : spec_(spec),
      max_width_(max_width),
      prefill_width_(spec.logits_to_keep.empty()
                         ? max_width
                         : std::min(prefill_width, std::max(1, spec.capacity))),
      device_id_(provider.device_id) {
  if (spec.num_layers <= 0 || spec.num_kv_heads <= 0 || spec.head_dim <= 0 ||
      spec.vocab_size <= 0 || spec.capacity <= 0) {
    throw std::invalid_argument(
        "model '" + spec.path + "': num_layers " + std::to_string(spec.num_layers) +
        ", num_kv_heads " + std::to_string(spec.num_kv_heads) + ", head_dim " +
        std::to_string(spec.head_dim) + ", vocab_size " + std::to_string(spec.vocab_size) +
        ", capacity " + std::to_string(spec.capacity) + " must all be > 0");
  }
  if (max_width < 1 || prefill_width < 1) {
    throw std::invalid_argument("max_width " + std::to_string(max_width) + " and prefill_width " +
                                std::to_string(prefill_width) + " must be >= 1");
  }
  if ((!spec.features.empty() || !spec.hidden_states.empty()) && spec.hidden_size <= 0) {
    throw std::invalid_argument("model '" + spec.path + "': hidden_size " +
                                std::to_string(spec.hidden_size) +
                                " must be > 0 with a features input or hidden_states output");
  }
  float_type(spec.kv_dtype, "kv_dtype");
  float_type(spec.logits_dtype, "logits_dtype");
  ort::require_loaded();
  session_ = ort::open_session(spec.path, provider, &provider_, shared_threads);
  on_device_ = provider_ != "cpu";
  run_options_ = Ort::RunOptions();
  cpu_info_ = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  for (int l = 0; l < spec.num_layers; ++l) {
    past_names_.push_back(layer_name(spec.past_key, l));
    past_names_.push_back(layer_name(spec.past_value, l));
    present_names_.push_back(layer_name(spec.present_key, l));
    present_names_.push_back(layer_name(spec.present_value, l));
  }
  check_io();
  allocate_kv();
  create_io_values();
  create_bindings();
}

Model::~Model() = default;

void Model::check_io() const {
  const auto inputs = io_types(session_, true);
  const auto outputs = io_types(session_, false);
  const auto kv_type = float_type(spec_.kv_dtype, "kv_dtype");
  const std::string& m = spec_.path;
  expect_io(inputs, spec_.input_ids, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, "input", m);
  expect_io(inputs, spec_.seqlens_k, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, "input", m);
  expect_io(inputs, spec_.total_sequence_length, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, "input", m);
  expect_io(outputs, spec_.logits, float_type(spec_.logits_dtype, "logits_dtype"), "output", m);
  expect_dims(outputs, spec_.logits, {1, -1, spec_.vocab_size}, "output", m);
  const std::vector<int64_t> kv_dims = {1, spec_.num_kv_heads, spec_.capacity, spec_.head_dim};
  for (size_t i = 0; i < past_names_.size(); ++i) {
    expect_io(inputs, past_names_[i], kv_type, "input", m);
    expect_io(outputs, present_names_[i], kv_type, "output", m);
    expect_dims(inputs, past_names_[i], kv_dims, "input", m);
    expect_dims(outputs, present_names_[i], kv_dims, "output", m);
  }
  check_feature_io(inputs, outputs, spec_);
  // Every graph input is bound by forward(): one the manifest does not name (e.g. the KV of a
  // layer beyond num_layers) would fail at the first run.
  if (!spec_.logits_to_keep.empty()) {
    expect_io(inputs, spec_.logits_to_keep, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, "input", m);
  }
  if (!spec_.tree_parents.empty()) {
    expect_io(inputs, spec_.tree_parents, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, "input", m);
  }
  const size_t bound = 3 + past_names_.size() + (spec_.features.empty() ? 0 : 1) +
                       (spec_.logits_to_keep.empty() ? 0 : 1) +
                       (spec_.tree_parents.empty() ? 0 : 1);
  if (inputs.size() != bound) {
    std::string extra;
    for (const auto& kv : inputs) {
      const auto& p = past_names_;
      const bool known = kv.first == spec_.input_ids || kv.first == spec_.seqlens_k ||
                         kv.first == spec_.total_sequence_length || kv.first == spec_.features ||
                         kv.first == spec_.logits_to_keep || kv.first == spec_.tree_parents ||
                         std::find(p.begin(), p.end(), kv.first) != p.end();
      if (!known) extra += (extra.empty() ? "" : ", ") + kv.first;
    }
    throw std::runtime_error("model '" + m + "' has inputs the manifest does not describe: " +
                             extra + " (num_layers " + std::to_string(spec_.num_layers) + ")");
  }
}

void Model::allocate_kv() {
  // KV per layer: key and value, kv_dtype [1, num_kv_heads, capacity, head_dim].
  const int64_t shape[4] = {1, spec_.num_kv_heads, spec_.capacity, spec_.head_dim};
  const auto type = float_type(spec_.kv_dtype, "kv_dtype");
  Ort::AllocatorWithDefaultOptions cpu_alloc;
  OrtAllocator* alloc = cpu_alloc;
  if (on_device_) {
    Ort::MemoryInfo info("Cuda", OrtDeviceAllocator, device_id_, OrtMemTypeDefault);
    device_alloc_ = std::make_unique<Ort::Allocator>(session_, info);
    alloc = *device_alloc_;
  }
  const size_t elem = spec_.kv_dtype == "float16" ? 2 : 4;
  const size_t bytes =
      elem * spec_.num_kv_heads * static_cast<size_t>(spec_.capacity) * spec_.head_dim;
  for (size_t i = 0; i < past_names_.size(); ++i) {
    kv_.push_back(Ort::Value::CreateTensor(alloc, shape, 4, type));
    // Entries past n_past are never attended to; zeroing keeps them finite anyway.
    if (!on_device_) std::memset(kv_.back().GetTensorMutableRawData(), 0, bytes);
  }
}

void Model::create_io_values() {
  const int64_t vocab = spec_.vocab_size;
  const int widest = std::max(max_width_, prefill_width_);
  ids_.assign(widest, 0);
  const bool fp16 = spec_.logits_dtype == "float16";
  logits_f32_.assign(static_cast<size_t>(max_width_) * vocab, 0.0f);
  if (fp16) logits_f16_.assign(static_cast<size_t>(max_width_) * vocab, 0);
  for (int w = 1; w <= widest; ++w) {
    const int64_t ids_shape[2] = {1, w};
    ids_values_.push_back(
        Ort::Value::CreateTensor<int64_t>(cpu_info_, ids_.data(), w, ids_shape, 2));
  }
  for (int w = 1; w <= max_width_; ++w) {
    const int64_t logits_shape[3] = {1, w, vocab};
    const size_t count = static_cast<size_t>(w) * vocab;
    if (fp16) {
      logits_values_.push_back(Ort::Value::CreateTensor(cpu_info_, logits_f16_.data(), count * 2,
                                                        logits_shape, 3,
                                                        ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16));
    } else {
      logits_values_.push_back(
          Ort::Value::CreateTensor<float>(cpu_info_, logits_f32_.data(), count, logits_shape, 3));
    }
  }
  const int64_t h = spec_.hidden_size;
  if (!spec_.features.empty()) features_.assign(static_cast<size_t>(widest) * h, 0.0f);
  if (!spec_.hidden_states.empty()) hidden_.assign(static_cast<size_t>(widest) * h, 0.0f);
  for (int w = 1; w <= widest; ++w) {
    const int64_t shape[3] = {1, w, h};
    const size_t count = static_cast<size_t>(w) * h;
    if (!features_.empty()) {
      features_values_.push_back(
          Ort::Value::CreateTensor<float>(cpu_info_, features_.data(), count, shape, 3));
    }
    if (!hidden_.empty()) {
      hidden_values_.push_back(
          Ort::Value::CreateTensor<float>(cpu_info_, hidden_.data(), count, shape, 3));
    }
  }
  if (!spec_.tree_parents.empty()) {
    parents_.resize(widest);
    for (int i = 0; i < widest; ++i) parents_[i] = i - 1;  // a chain
    for (int w = 1; w <= widest; ++w) {
      const int64_t shape[1] = {w};
      parents_values_.push_back(
          Ort::Value::CreateTensor<int32_t>(cpu_info_, parents_.data(), w, shape, 1));
    }
  }
  const int64_t seqlens_shape[1] = {1};
  seqlens_value_ = Ort::Value::CreateTensor<int32_t>(cpu_info_, seqlens_k_, 1, seqlens_shape, 1);
  total_value_ = Ort::Value::CreateTensor<int32_t>(cpu_info_, total_len_, 1, nullptr, 0);
  keep_n_value_ = Ort::Value::CreateTensor<int64_t>(cpu_info_, keep_n_, 1, seqlens_shape, 1);
  keep_one_value_ = Ort::Value::CreateTensor<int64_t>(cpu_info_, keep_one_, 1, seqlens_shape, 1);
  const int64_t last_shape[3] = {1, 1, vocab};
  if (fp16) {
    last_logits_value_ =
        Ort::Value::CreateTensor(cpu_info_, logits_f16_.data(), vocab * 2, last_shape, 3,
                                 ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16);
  } else {
    last_logits_value_ =
        Ort::Value::CreateTensor<float>(cpu_info_, logits_f32_.data(), vocab, last_shape, 3);
  }
}

void Model::bind_small_inputs(Ort::IoBinding& binding, bool last_only) {
  binding.BindInput(spec_.seqlens_k.c_str(), seqlens_value_);
  binding.BindInput(spec_.total_sequence_length.c_str(), total_value_);
  if (!spec_.logits_to_keep.empty()) {
    binding.BindInput(spec_.logits_to_keep.c_str(), last_only ? keep_one_value_ : keep_n_value_);
  }
}

void Model::create_bindings() {
  // One binding per width: the CPU provider keeps references to our buffers, so forward() only
  // writes ids_ / seqlens_k_ / total_len_ in place. The same KV value is past input and present
  // output (GroupQueryAttention's shared-buffer mode).
  for (int w = 1; w <= max_width_; ++w) bindings_.push_back(make_binding(w, false));
  if (spec_.logits_to_keep.empty()) return;
  for (int w = 1; w <= prefill_width_; ++w) last_bindings_.push_back(make_binding(w, true));
}

// Everything bound for a width-w call; last_only: logits of the last row into [1, 1, vocab].
Ort::IoBinding Model::make_binding(int w, bool last_only) {
  Ort::IoBinding binding(session_);
  binding.BindInput(spec_.input_ids.c_str(), ids_values_[w - 1]);
  bind_small_inputs(binding, last_only);
  for (size_t i = 0; i < kv_.size(); ++i) {
    binding.BindInput(past_names_[i].c_str(), kv_[i]);
    binding.BindOutput(present_names_[i].c_str(), kv_[i]);
  }
  binding.BindOutput(spec_.logits.c_str(), last_only ? last_logits_value_ : logits_values_[w - 1]);
  if (!features_.empty()) binding.BindInput(spec_.features.c_str(), features_values_[w - 1]);
  if (!hidden_.empty()) binding.BindOutput(spec_.hidden_states.c_str(), hidden_values_[w - 1]);
  if (!parents_.empty()) binding.BindInput(spec_.tree_parents.c_str(), parents_values_[w - 1]);
  return binding;
}

// Writes the ids, the length scalars and the features of a width-n call into the bound buffers.
void Model::write_inputs(const int32_t* tokens, int n, const float* features,
                         const int32_t* parents, bool last_only) {
  const int widest = last_only ? prefill_width_ : max_width_;
  if (n < 1 || n > widest || n_past_ + n > spec_.capacity) {
    throw std::runtime_error("Model::forward: width " + std::to_string(n) + " at n_past " +
                             std::to_string(n_past_) + " (max width " + std::to_string(widest) +
                             ", capacity " + std::to_string(spec_.capacity) + ")");
  }
  if ((features != nullptr) == features_.empty()) {
    throw std::runtime_error("model '" + spec_.path + "': forward " +
                             (features != nullptr ? "got features, the graph takes none"
                                                  : "needs features for '" + spec_.features + "'"));
  }
  if (parents != nullptr && !has_tree()) {
    throw std::runtime_error("model '" + spec_.path + "': a tree forward needs tree_parents and " +
                             "the CPU provider (provider " + provider_ + ")");
  }
  for (int i = 0; i < n; ++i) ids_[i] = tokens[i];
  // parents_ holds a chain unless the previous call was a tree: restore only those rows.
  for (int i = 0; i < tree_rows_; ++i) parents_[i] = i - 1;
  tree_rows_ = 0;
  if (parents != nullptr) {  // the op checks each parent
    std::copy_n(parents, n, parents_.data());
    tree_rows_ = n;
  }
  if (features != nullptr) {
    std::copy_n(features, static_cast<size_t>(n) * spec_.hidden_size, features_.data());
  }
  seqlens_k_[0] = n_past_ + n - 1;
  total_len_[0] = n_past_ + n;
  keep_n_[0] = n;
}

const float* Model::forward(const int32_t* tokens, int n, const float* features,
                            const int32_t* parents) {
  return run(tokens, n, features, parents, false);
}

// One Run at width n; last_only (logits_to_keep graphs): logits of the last row only, in row 0.
const float* Model::run(const int32_t* tokens, int n, const float* features, const int32_t* parents,
                        bool last_only) {
  write_inputs(tokens, n, features, parents, last_only);
  Ort::IoBinding& binding = last_only ? last_bindings_[n - 1] : bindings_[n - 1];
  if (on_device_) {
    // A device session copies CPU inputs at bind time: rebind the ones that changed.
    binding.BindInput(spec_.input_ids.c_str(), ids_values_[n - 1]);
    bind_small_inputs(binding, last_only);
    if (!features_.empty()) binding.BindInput(spec_.features.c_str(), features_values_[n - 1]);
    if (!parents_.empty()) binding.BindInput(spec_.tree_parents.c_str(), parents_values_[n - 1]);
  }
  try {
    session_.Run(run_options_, binding);
  } catch (const Ort::Exception& e) {
    throw std::runtime_error("model '" + spec_.path + "' forward failed: " + e.what());
  }
  if (on_device_) binding.SynchronizeOutputs();
  n_past_ += n;
  last_width_ = n;
  if (logits_f16_.empty()) return logits_f32_.data();
  const size_t count = static_cast<size_t>(last_only ? 1 : n) * spec_.vocab_size;
  for (size_t i = 0; i < count; ++i) {
    logits_f32_[i] = Ort::Float16_t::FromBits(logits_f16_[i]).ToFloat();
  }
  return logits_f32_.data();
}

const float* Model::prefill(const int32_t* tokens, int n, const std::atomic<bool>* cancel,
                            const float* features, const HiddenFn& on_hidden) {
  if (n < 1) throw std::runtime_error("Model::prefill: no tokens");
  const bool last_only = !spec_.logits_to_keep.empty();  // only the last row is returned
  const float* logits = nullptr;
  int last_width = 0;
  for (int done = 0; done < n; done += last_width) {
    if (cancel != nullptr && done > 0 && cancel->load(std::memory_order_relaxed)) return nullptr;
    last_width = std::min(prefill_width_, n - done);  // == max_width_ without logits_to_keep
    const int pos = n_past_;
    const float* f =
        features != nullptr ? features + static_cast<size_t>(done) * spec_.hidden_size : nullptr;
    logits = run(tokens + done, last_width, f, nullptr, last_only);
    if (on_hidden && !hidden_.empty()) on_hidden(pos, hidden_.data(), last_width);
  }
  return last_only ? logits : logits + static_cast<size_t>(last_width - 1) * spec_.vocab_size;
}

void Model::rewind_to(int n) {
  if (n < 0 || n > n_past_) {
    throw std::runtime_error("Model::rewind_to(" + std::to_string(n) + ") with n_past " +
                             std::to_string(n_past_));
  }
  n_past_ = n;
}

void Model::keep_rows(int base, const int32_t* rows, int n) {
  bool ok = base >= 0 && n >= 0 && !on_device_;
  for (int i = 0; i < n && ok; ++i) {
    ok = rows[i] >= i && (i == 0 || rows[i] > rows[i - 1]) && base + rows[i] < n_past_;
  }
  if (!ok) {
    throw std::runtime_error("Model::keep_rows: " + std::to_string(n) + " rows at base " +
                             std::to_string(base) + " with n_past " + std::to_string(n_past_) +
                             " (rows must increase, rows[i] >= i, on the CPU provider)");
  }
  const size_t elem = spec_.kv_dtype == "float16" ? 2 : 4;
  const size_t row_bytes = elem * spec_.head_dim;
  const size_t head_bytes = row_bytes * spec_.capacity;  // one head's [capacity, head_dim]
  for (Ort::Value& buf : kv_) {                          // [1, num_kv_heads, capacity, head_dim]
    auto* data = static_cast<char*>(buf.GetTensorMutableRawData());
    for (int g = 0; g < spec_.num_kv_heads; ++g) {
      char* head = data + g * head_bytes;
      for (int i = 0; i < n; ++i) {
        if (rows[i] == i) continue;
        std::memcpy(head + (base + i) * row_bytes, head + (base + rows[i]) * row_bytes, row_bytes);
      }
    }
  }
  n_past_ = base + n;
}

}  // namespace edgespec

// One ONNX decoder (docs/bundle-format.md) with its IO binding and KV buffers, set up once.
// forward() writes the token ids, the two length scalars and runs: nothing is allocated per call
// on the CPU provider. Rollback is a length change (rewind_to).
#pragma once

#include <onnxruntime_cxx_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "edgespec/engine.h"

namespace edgespec {

// Receives the hidden rows of one prefill chunk: positions pos..pos+n-1, float [n × hidden_size].
using HiddenFn = std::function<void(int pos, const float* hidden, int n)>;

class Model {
 public:
  // max_width: the widest forward() call (all logits rows: the verify width). prefill_width:
  // the prefill chunk when the graph has logits_to_keep (one logits row per chunk, so a wide
  // chunk costs no logits memory; a chunk reads the weights once, so wider is faster: 256-token
  // chunks prefill a 768-token prompt ~20% faster than 64); without it chunks are max_width.
  // Buffers below are sized for the wider of the two ("widest").
  // shared_threads: run on ORT's global thread pool (a target and its draft share one; see
  // ort::open_session).
  Model(const ModelSpec& spec, const ProviderSpec& provider, int max_width, int prefill_width,
        bool shared_threads = false);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Runs tokens[0..n) at positions n_past()..n_past()+n-1 (1 <= n <= max_width(),
  // n_past() + n <= capacity()). Returns float logits [n × vocab()], valid until the next call.
  // features: float [n × hidden_size()] when the graph has a features input, else nullptr.
  // parents: int32 [n], row i's parent row (-1 = the past; see attention_op.h) to verify a tree
  // (needs has_tree()); nullptr = a chain.
  const float* forward(const int32_t* tokens, int n, const float* features = nullptr,
                       const int32_t* parents = nullptr);
  // Runs all n tokens in chunks of prefill_width(); returns the logits of the last one [vocab()].
  // Stops early (returning nullptr) when *cancel becomes true between chunks. features: float
  // [n × hidden_size()] or nullptr, as in forward(). on_hidden (when set and hidden states are
  // bound) gets each chunk's hidden rows.
  const float* prefill(const int32_t* tokens, int n, const std::atomic<bool>* cancel = nullptr,
                       const float* features = nullptr, const HiddenFn& on_hidden = nullptr);
  // Forgets every KV entry at positions >= n (0 <= n <= n_past()): a length change, no copy.
  void rewind_to(int n);
  // After a tree forward at base: keeps the entries of rows[0..n) (increasing, rows[i] >= i,
  // base + rows[i] < n_past()) as positions base..base+n-1 and forgets the rest. Copies only
  // the rows that move (an accepted path's few rows, every layer); CPU only.
  void keep_rows(int base, const int32_t* rows, int n);

  int n_past() const { return n_past_; }
  int capacity() const { return spec_.capacity; }
  int vocab() const { return spec_.vocab_size; }
  int max_width() const { return max_width_; }
  int prefill_width() const { return prefill_width_; }
  const ModelSpec& spec() const { return spec_; }
  int hidden_size() const { return spec_.hidden_size; }
  // Whether forward() can verify a tree (the graph takes tree_parents, and the KV is on the CPU).
  bool has_tree() const { return !spec_.tree_parents.empty() && !on_device_; }
  // Hidden rows of the latest forward(), float [last_width() × hidden_size()], valid until the
  // next call; nullptr when the spec binds no hidden_states output.
  const float* hidden() const { return hidden_.empty() ? nullptr : hidden_.data(); }
  int last_width() const { return last_width_; }
  const std::string& provider() const { return provider_; }

 private:
  void check_io() const;
  void allocate_kv();
  void create_io_values();
  void create_bindings();
  void bind_small_inputs(Ort::IoBinding& binding, bool last_only);
  Ort::IoBinding make_binding(int w, bool last_only);
  void write_inputs(const int32_t* tokens, int n, const float* features, const int32_t* parents,
                    bool last_only);
  const float* run(const int32_t* tokens, int n, const float* features, const int32_t* parents,
                   bool last_only);

  ModelSpec spec_;
  int max_width_;
  int prefill_width_;     // prefill chunk (logits_to_keep graphs), else == max_width_
  std::string provider_;  // provider actually used ("cpu" after a fallback)
  bool on_device_;        // KV lives in GPU memory; small inputs are rebound per call
  int device_id_;         // GPU ordinal for the device KV allocator
  int n_past_ = 0;
  int last_width_ = 0;  // width of the latest forward()
  Ort::Session session_{nullptr};
  Ort::MemoryInfo cpu_info_{nullptr};
  std::unique_ptr<Ort::Allocator> device_alloc_;  // KV allocator for cuda / tensorrt
  std::vector<Ort::Value> kv_;                    // [2 × num_layers]: key, value per layer;
                                // each kv_dtype [1, num_kv_heads, capacity, head_dim]
  std::vector<std::string> past_names_;        // [2 × num_layers], same order as kv_
  std::vector<std::string> present_names_;     // [2 × num_layers]
  std::vector<int64_t> ids_;                   // int64 [widest]: input_ids storage
  int32_t seqlens_k_[1] = {0};                 // int32 [1]: n_past + n - 1
  int32_t total_len_[1] = {0};                 // int32 []: n_past + n
  std::vector<float> logits_f32_;              // float [max_width × vocab]: logits (fp32 graph)
                                               // or converted fp16 logits
  std::vector<uint16_t> logits_f16_;           // float16 [max_width × vocab] (fp16 graph only)
  std::vector<Ort::Value> ids_values_;         // [widest]: w → int64 [1, w+1] over ids_
  std::vector<Ort::Value> logits_values_;      // [max_width]: w → [1, w+1, vocab] over logits
  std::vector<float> features_;                // float [widest × hidden_size] (features input)
  std::vector<float> hidden_;                  // float [widest × hidden_size] (hidden_states)
  std::vector<Ort::Value> features_values_;    // [widest]: w → [1, w+1, hidden_size]
  std::vector<Ort::Value> hidden_values_;      // [widest]: w → [1, w+1, hidden_size]
  std::vector<int32_t> parents_;               // int32 [widest]: tree_parents (i - 1: a chain)
  int tree_rows_ = 0;                          // rows of parents_ a tree forward overwrote
  std::vector<Ort::Value> parents_values_;     // [widest]: w → int32 [w+1] over parents_
  Ort::Value seqlens_value_{nullptr};          // int32 [1] over seqlens_k_
  Ort::Value total_value_{nullptr};            // int32 [] over total_len_
  int64_t keep_n_[1] = {0};                    // int64 [1]: logits_to_keep = n (all rows)
  int64_t keep_one_[1] = {1};                  // int64 [1]: logits_to_keep = 1 (prefill)
  Ort::Value keep_n_value_{nullptr};           // int64 [1] over keep_n_
  Ort::Value keep_one_value_{nullptr};         // int64 [1] over keep_one_
  Ort::Value last_logits_value_{nullptr};      // [1, 1, vocab] over the logits buffer
  std::vector<Ort::IoBinding> bindings_;       // [max_width]: w → everything bound for width w+1
  std::vector<Ort::IoBinding> last_bindings_;  // [prefill_width] (logits_to_keep graphs): the same
                                               // with logits for the last row only
  Ort::RunOptions run_options_{nullptr};
};

}  // namespace edgespec

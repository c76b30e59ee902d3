// Public C++ API of the edgespec scheduler: what bindings.cpp wraps.
// No ORT or pybind11 types appear here.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace edgespec {

// One decoder graph as described by the bundle manifest (docs/bundle-format.md).
struct ModelSpec {
  std::string path;                      // absolute path of model.onnx
  int num_layers = 0;                    // decoder layers (KV buffers = 2 * num_layers)
  int num_kv_heads = 0;                  // KV heads per layer
  int head_dim = 0;                      // per-head size
  int vocab_size = 0;                    // logits width
  int capacity = 0;                      // KV slots per layer: max prompt + generated tokens
  std::string kv_dtype = "float32";      // "float32" | "float16"
  std::string logits_dtype = "float32";  // "float32" | "float16"
  std::string input_ids = "input_ids";   // int64 [1, n]
  std::string seqlens_k = "seqlens_k";   // int32 [1] = n_past + n - 1
  std::string total_sequence_length = "total_sequence_length";  // int32 [] = n_past + n
  std::string past_key = "past_key_values.{layer}.key";         // "{layer}" is replaced
  std::string past_value = "past_key_values.{layer}.value";
  std::string present_key = "present.{layer}.key";
  std::string present_value = "present.{layer}.value";
  std::string logits = "logits";   // [1, n, vocab_size] ([1, k, vocab_size] with logits_to_keep)
  std::string logits_to_keep;      // input int64 [1]: logits of the last k rows only ("" = the
                                   // graph returns all n rows); prefill asks for 1
  std::string tree_parents;        // input int32 [n]: each row's parent row, -1 = the past ("" =
                                   // the graph verifies chains only); bound as a chain except
                                   // for a tree verify (Model::forward)
  int hidden_size = 0;             // feature width H (needed when features or hidden_states is set)
  std::string features;            // input float32 [1, n, hidden_size] ("" = the graph has none)
  std::string hidden_states;       // output float32 [1, n, hidden_size] ("" = not bound)
  std::vector<int32_t> token_map;  // eagle head only: int32 [vocab_size], draft id -> target id
  bool reuse_prefix = false;       // rows are computed the same whatever the call's width
                                   // (edgespec attention): a generation keeps the KV of the
                                   // prefix its prompt shares with the tokens before it (a
                                   // chat follow-up) and prefills the rest, the same bits as
                                   // a fresh prefill; false = every generation prefills all
};

// The bundle's n-gram table (docs/bundle-format.md, lookup): for contexts of n_min..n_max
// tokens seen in the target's own answers, the token that most often followed. Validated by the
// Engine (std::invalid_argument). Empty keys = no table.
struct NgramTable {
  std::vector<uint64_t> keys;   // uint64 [E], strictly ascending: key of a context (ngram_table.h)
  std::vector<int32_t> next;    // int32 [E]: the token that most often followed it
  std::vector<uint32_t> hits;   // uint32 [E]: how often `next` followed it (>= 1)
  std::vector<uint32_t> total;  // uint32 [E]: how often the context occurred (>= hits)
  int n_min = 0;                // shortest context the keys cover
  int n_max = 0;                // longest (<= 4)
};

// Where and how a model runs.
struct ProviderSpec {
  std::string name = "cpu";     // "cpu" | "cuda" | "tensorrt"
  int threads = 0;              // intra-op threads; 0 = ORT default (physical cores)
  int device_id = 0;            // GPU ordinal for cuda / tensorrt
  std::string trt_cache_dir;    // TensorRT engine cache directory ("" = no cache)
  bool allow_fallback = false;  // fall back to CPU when the provider cannot load
  int prefill_chunk = 0;        // tokens per prefill forward (graphs with logits_to_keep; others
                                // use 64); 0 = 256. Wider is faster on long prompts (one pass
                                // over the weights per chunk) and needs more activation memory
};

// Parameters of one generation. Validated by Engine::generate (std::invalid_argument).
struct GenConfig {
  int max_new_tokens = 256;       // >= 1
  float temperature = 0.0f;       // 0 = greedy; > 0 samples
  float top_p = 1.0f;             // (0, 1]
  int top_k = 0;                  // 0 = off
  uint64_t seed = 0;              // RNG seed for sampling
  std::string drafter = "none";   // "none" | "ngram" | "model" | "eagle"
  int num_draft_tokens = 0;       // max drafted tokens per step; 0 = drafter default
  bool adaptive = true;           // adapt draft length to observed acceptance and verify cost
  int ngram_max = 8;              // prompt lookup: longest n-gram to match (the longest match
                                  // wins, then the most recent); longer ones earn longer drafts
  int ngram_min = 1;              // prompt lookup: shortest n-gram to match
  bool ngram_table = true;        // draft from the bundle's n-gram table (if it has one) where
                                  // the conversation offers no copy: drafter "ngram" below a
                                  // 2-token match, "eagle" below the longer of that and
                                  // copy_match (before its head)
  int copy_match = 1;             // drafter "eagle": copy by prompt lookup instead of running the
                                  // head when a match is at least this long (0 = never); below a
                                  // 2-token match the n-gram table drafts first, as for "ngram"
  float draft_confidence = 0.3f;  // drafter "eagle": stop drafting once the product of the head's
                                  // top-token probabilities falls below this (0 = never): its
                                  // confidence tracks acceptance (EAGLE-2)
  float sibling_min = 0.0f;       // drafter "eagle", greedy, target with tree_parents: the head's
                                  // second choice at a depth joins the verify as a sibling when
                                  // its probability of reaching that depth and picking it is at
                                  // least this (e.g. 0.2); 0 = chains only, the default: on a
                                  // 2-core CPU siblings measured neutral (drafter_eagle.cpp)
  std::vector<int32_t> eos_ids;   // generation ends after committing one of these
};

struct GenStats {
  int n_prompt = 0;              // prompt tokens
  int n_prompt_reused = 0;       // of them, those whose KV was kept from before (not prefilled)
  int n_generated = 0;           // tokens committed (returned)
  int n_steps = 0;               // target verify calls after prefill
  int n_draft = 0;               // tokens proposed by the drafter
  int n_accept = 0;              // proposed tokens accepted
  std::vector<int> accept_hist;  // accept_hist[j] = steps that accepted exactly j drafts
  int n_tree = 0;                // steps that verified a draft tree (GenConfig.sibling_min)
  int n_off_chain = 0;           // tree steps whose accepted path left the main chain
  double t_prefill_s = 0;        // prefill (target + drafter) wall time
  double t_draft_s = 0;          // time in drafter propose / catch-up
  double t_verify_s = 0;         // time in target forward (verify) calls
  double t_total_s = 0;          // wall time of generate()
  double t_first_token_s = 0;    // generate() start to first committed token
};

struct GenResult {
  std::vector<int32_t> tokens;  // committed new tokens (prompt excluded)
  std::string finish_reason;    // "eos" | "length" | "stop" | "cancelled"
  GenStats stats;
};

// Called with each chunk of committed tokens. Return true to stop ("stop").
using ChunkCallback = std::function<bool(const int32_t* tokens, int n)>;

// Loads libonnxruntime from `path` ("" = system loader) once per process.
// Throws std::runtime_error when the library cannot load or its API is older than the headers'.
void load_runtime(const std::string& path);
// Version string of the loaded ORT ("" before load_runtime).
std::string runtime_version();
// Execution providers the loaded ORT build offers (e.g. "CPUExecutionProvider").
std::vector<std::string> available_providers();

class Engine {
 public:
  // Opens the target (and the draft when draft.path is non-empty, the feature-level draft head
  // when eagle.path is non-empty: it runs on draft_provider); preallocates KV buffers. With a
  // head, the target binds its hidden_states output (docs/bundle-format.md, models.eagle).
  // `table` (optional) feeds prompt lookup (GenConfig.ngram_table).
  Engine(const ModelSpec& target, const ModelSpec& draft, const ProviderSpec& target_provider,
         const ProviderSpec& draft_provider, const ModelSpec& eagle = ModelSpec(),
         const NgramTable& table = NgramTable());
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  bool has_draft() const;
  bool has_eagle() const;
  int capacity() const;  // min of target, draft and eagle head capacity

  // Runs one generation. Its tokens do not depend on earlier ones: the KV of the prompt's prefix
  // that the previous generations' tokens share is kept only where the graphs say that gives the
  // same bits (ModelSpec.reuse_prefix); the rest is prefilled. `cancel` may be flipped by any
  // thread; generation stops at the next step boundary with finish_reason "cancelled".
  // Not re-entrant: callers serialize (the Python Session holds a lock).
  GenResult generate(const std::vector<int32_t>& prompt, const GenConfig& cfg,
                     const ChunkCallback& on_chunk, const std::atomic<bool>* cancel);
  // Forgets what earlier generations left past their first `keep` positions (0: all of it), so
  // the next generation prefills its prompt from there at the latest (a cold start, as a
  // benchmark's first turn wants). A length change. Throws std::invalid_argument for keep < 0,
  // std::runtime_error while a generation runs.
  void forget(int keep);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace edgespec

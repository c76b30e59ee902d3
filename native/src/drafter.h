// The drafter interface: proposes up to k tokens after the committed sequence. One file per
// drafter (drafter_ngram.cpp, drafter_model.cpp, drafter_eagle.cpp); the engine owns them through
// this interface.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "edgespec/engine.h"

namespace edgespec {

class Model;
class NgramIndex;

// A drafter's proposal, preallocated once for k_max tokens: a chain d_1..d_n, or (greedy
// verification only, on a target with has_tree()) a tree: draft i hangs below verify row
// parent[i] (0 = the last committed token, j = draft j - 1), and the target checks every branch
// in one forward (spec::accept_greedy_tree). Drafts 0..n_chain-1 are always a chain from the
// root (the branch the draft length k applies to); the rest hang off it.
struct DraftOut {
  std::vector<int32_t> tokens;  // int32 [k_max]: proposed tokens d_1..d_n
  std::vector<int32_t> parent;  // int32 [k_max]: verify row of each draft's parent (tree only)
  std::vector<float> q;         // float [k_max × vocab]: q_i rows (stochastic drafters only)
  int n = 0;                    // number proposed (0 <= n <= k, or <= max_n with a tree)
  int n_chain = 0;              // drafts 0..n_chain-1 form the main chain (== n without a tree)
  int max_n = 0;                // most drafts a tree may hold (set by the engine: width, capacity)
  bool has_q = false;           // false: q is one-hot on tokens (deterministic proposal)
  bool tree = false;            // parent[] holds a tree (set by add_leaf)

  void reserve(int k_max, int vocab, bool stochastic) {
    tokens.assign(k_max, 0);
    parent.assign(k_max, 0);
    q.assign(stochastic ? static_cast<size_t>(k_max) * vocab : 0, 0.0f);
  }
  // Starts a proposal: tokens[0..n) as the main chain.
  void set_chain(int count) {
    n = n_chain = count;
    for (int i = 0; i < n; ++i) parent[i] = i;
    tree = false;
  }
  // Adds a draft below verify row `row` (<= n; the caller keeps n < max_n): a leaf, e.g. a
  // sibling of draft `row` (drafts i hang below row i in a chain).
  void add_leaf(int row, int32_t token) {
    tokens[n] = token;
    parent[n] = row;
    tree = tree || row != n;
    ++n;
  }
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Starts a generation: `prompt` is the committed sequence before the first generated token.
  // `cfg` was validated by the engine. May run a prefill.
  virtual void begin(const std::vector<int32_t>& prompt, const GenConfig& cfg) = 0;
  // Forgets the state of its own that a later begin() could keep past position `keep`
  // (Engine::forget; a drafter with its own KV keeps what a new prompt shares with it).
  virtual void forget(int keep) {}
  // Which draft class the next proposal falls in (e.g. its prompt-lookup match length), or -1
  // when there is nothing to propose (the step then decodes plainly). Called before every
  // propose(); the cost-aware policy keeps acceptance per class (draft_policy.h), clamped to
  // [0, kDraftClasses). A drafter may cache what it found here for the propose() that follows.
  virtual int draft_class(const std::vector<int32_t>& committed) { return 0; }
  // Proposes at most k (>= 1) tokens following `committed` (prompt + generated so far) into
  // out.tokens[0..out.n), with q rows when out.has_q. Returns out.n.
  virtual int propose(const std::vector<int32_t>& committed, int k, DraftOut& out) = 0;
  // Tells the drafter how many of its last proposal were accepted (the next committed token is
  // the correction or bonus, seen in the next propose()).
  virtual void on_accept(int n_accept) = 0;
  // Draft length to start from when GenConfig.num_draft_tokens == 0.
  virtual int default_k() const = 0;
  // Whether propose() samples and records q rows for this configuration.
  virtual bool stochastic(const GenConfig& cfg) const = 0;
  // The target ran positions pos..pos+n-1; hidden is its hidden_states rows, float [n × H].
  // Called on the eagle head's drafter (when the target binds hidden states) after each target
  // prefill chunk, BEFORE begin(), and after every verify forward, before on_accept(), whichever
  // drafter is active: its feature store follows the target KV, a kept prefix included.
  // The target KV holds committed tokens only, so the rows up to pos are true features; the
  // later rows of a verify are true only for the drafts on_accept() reports accepted (when
  // another drafter is active, no on_accept() comes: the next forward's pos tells).
  virtual void on_target_features(int pos, const float* hidden, int n) {}
};

// Prompt lookup: matches the last n tokens against the prompt + generated text; with a table
// (nullable), drafts from it where the text has no match of 2+ tokens (GenConfig.ngram_table).
std::unique_ptr<Drafter> make_ngram_drafter(std::shared_ptr<const NgramIndex> table);
// A draft ONNX model with its own KV (kept in sync with the committed sequence).
std::unique_ptr<Drafter> make_model_drafter(std::unique_ptr<Model> draft);
// A feature-level draft head (docs/bundle-format.md, models.eagle) drafting from the target's
// hidden states. token_map: int32 [head vocab], draft id -> target id (validated by the engine).
// tree_ok: the target verifies trees (Model::has_tree): greedy head steps may add siblings.
// table (nullable): drafts where no copy is found, before the head (GenConfig.ngram_table).
std::unique_ptr<Drafter> make_eagle_drafter(std::unique_ptr<Model> head,
                                            std::vector<int32_t> token_map, int target_vocab,
                                            bool tree_ok, std::shared_ptr<const NgramIndex> table);

}  // namespace edgespec

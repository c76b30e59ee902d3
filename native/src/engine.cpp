// The draft → verify loop (see native/include/edgespec/engine.h).
//
// KV convention: the target KV always holds every committed token except the newest one, which
// is fed as the first token of the next verify call: forward([last, d_1..d_k]) at
// n_past = committed − 1 returns k+1 rows; row i scores the token after d_i (d_0 = last).
// After accepting n drafts and committing the correction/bonus token, the target is rewound to
// committed_before + n, which again excludes only the newest token.
// Features (eagle head): with a head, every target forward also returns its hidden rows, which
// the head's drafter receives through on_target_features (positions of the forward's rows)
// whichever drafter is active, so its feature store follows the target KV (prefix reuse).
// Trees (greedy, has_tree() targets): the verify forward checks every branch of a draft tree;
// the accepted path's KV rows are then moved into place (Model::keep_rows) and its hidden rows
// are what the drafter receives, as if the path alone had been verified as a chain.
// Prefix reuse (ModelSpec.reuse_prefix): target_prefix records the tokens of the target KV's
// positions after a generation; the next one keeps the rows its prompt shares with them, at
// least one prompt token short so the prefill still yields the first token's logits.
// Capacity: the committed sequence (prompt + generated) never exceeds capacity(); a step with k
// drafts needs committed + k + 1 <= capacity, so k shrinks near the end and generation finishes
// "length" when not even one more token fits.
#include "edgespec/engine.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>

#include "draft_policy.h"
#include "drafter.h"
#include "model.h"
#include "ngram_table.h"
#include "prefix.h"
#include "spec_math.h"

namespace edgespec {
namespace {

constexpr int kMaxDraftTokens = 32;  // upper bound of GenConfig.num_draft_tokens
constexpr int kMaxWidth = 64;        // widest forward with all logits rows, >= kMaxDraftTokens + 1
constexpr int kPrefillWidth = 256;   // default prefill chunk of logits_to_keep graphs (model.h)
constexpr int kMaxPrefillWidth = 4096;  // upper bound of ProviderSpec.prefill_chunk
static_assert(kMaxWidth >= kMaxDraftTokens + 1, "verify width must fit the bindings");

// ProviderSpec.prefill_chunk, validated (std::invalid_argument), 0 mapped to the default.
int prefill_width(const ProviderSpec& p) {
  if (p.prefill_chunk < 0 || p.prefill_chunk > kMaxPrefillWidth) {
    throw std::invalid_argument("prefill_chunk must be in [0, " + std::to_string(kMaxPrefillWidth) +
                                "] (0 = " + std::to_string(kPrefillWidth) + "), got " +
                                std::to_string(p.prefill_chunk));
  }
  return p.prefill_chunk == 0 ? kPrefillWidth : p.prefill_chunk;
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string num(double v) {
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

void validate_config(const GenConfig& cfg, bool has_draft, bool has_eagle) {
  auto fail = [](const std::string& msg) { throw std::invalid_argument(msg); };
  if (cfg.max_new_tokens < 1) fail("max_new_tokens must be >= 1, got " + num(cfg.max_new_tokens));
  if (!(cfg.temperature >= 0.0f)) fail("temperature must be >= 0, got " + num(cfg.temperature));
  if (!(cfg.top_p > 0.0f && cfg.top_p <= 1.0f))
    fail("top_p must be in (0, 1], got " + num(cfg.top_p));
  if (cfg.top_k < 0) fail("top_k must be >= 0, got " + num(cfg.top_k));
  if (cfg.num_draft_tokens < 0 || cfg.num_draft_tokens > kMaxDraftTokens) {
    fail("num_draft_tokens must be in [0, " + num(kMaxDraftTokens) + "], got " +
         num(cfg.num_draft_tokens));
  }
  if (cfg.ngram_min < 1 || cfg.ngram_max < cfg.ngram_min) {
    fail("need 1 <= ngram_min <= ngram_max, got ngram_min " + num(cfg.ngram_min) + ", ngram_max " +
         num(cfg.ngram_max));
  }
  if (cfg.copy_match < 0) fail("copy_match must be >= 0, got " + num(cfg.copy_match));
  if (!(cfg.draft_confidence >= 0.0f && cfg.draft_confidence <= 1.0f))
    fail("draft_confidence must be in [0, 1], got " + num(cfg.draft_confidence));
  if (!(cfg.sibling_min >= 0.0f && cfg.sibling_min <= 1.0f))
    fail("sibling_min must be in [0, 1], got " + num(cfg.sibling_min));
  const std::string& d = cfg.drafter;
  if (d != "none" && d != "ngram" && d != "model" && d != "eagle") {
    fail("unknown drafter '" + d + "' (expected 'none', 'ngram', 'model' or 'eagle')");
  }
  if (d == "model" && !has_draft) {
    fail("drafter 'model' needs a draft model, and this engine has none");
  }
  if (d == "eagle" && !has_eagle) {
    fail("drafter 'eagle' needs an eagle draft head, and this engine has none");
  }
}

// token_map: exactly draft_vocab distinct target ids in [0, target_vocab).
void validate_token_map(const std::vector<int32_t>& map, int draft_vocab, int target_vocab) {
  auto fail = [](const std::string& msg) { throw std::invalid_argument(msg); };
  if (static_cast<int64_t>(map.size()) != draft_vocab) {
    fail("eagle token_map has " + num(map.size()) + " entries, expected vocab_size " +
         num(draft_vocab));
  }
  std::vector<int32_t> first(std::max(target_vocab, 0), -1);  // int32 [target vocab]: index or -1
  for (size_t i = 0; i < map.size(); ++i) {
    const int32_t t = map[i];
    const std::string entry = "eagle token_map[" + num(i) + "] = " + num(t);
    if (t < 0 || t >= target_vocab) {
      fail(entry + " is outside the target vocabulary [0, " + num(target_vocab) + ")");
    }
    if (first[t] >= 0) fail(entry + " duplicates token_map[" + num(first[t]) + "]");
    first[t] = static_cast<int32_t>(i);
  }
}

// An eagle head reads the target's features: names and widths must agree.
void validate_eagle(const ModelSpec& eagle, const ModelSpec& target) {
  auto fail = [](const std::string& msg) { throw std::invalid_argument(msg); };
  if (target.hidden_states.empty()) {
    fail("an eagle head needs the target's hidden_states output, and the target spec names none");
  }
  if (eagle.hidden_size <= 0 || eagle.hidden_size != target.hidden_size) {
    fail("eagle hidden_size " + num(eagle.hidden_size) + " differs from the target's " +
         num(target.hidden_size) + " (or is not > 0)");
  }
  if (eagle.features.empty() || eagle.hidden_states.empty()) {
    fail("an eagle head needs a features input and a hidden_states output, got '" + eagle.features +
         "' and '" + eagle.hidden_states + "'");
  }
  validate_token_map(eagle.token_map, eagle.vocab_size, target.vocab_size);
}

void validate_prompt(const std::vector<int32_t>& prompt, int vocab, int capacity) {
  if (prompt.empty()) throw std::invalid_argument("prompt is empty");
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= vocab) {
      throw std::invalid_argument("prompt token " + std::to_string(prompt[i]) + " at position " +
                                  std::to_string(i) + " is outside the vocabulary [0, " +
                                  std::to_string(vocab) + ")");
    }
  }
  if (static_cast<int64_t>(prompt.size()) + 1 > capacity) {
    throw std::invalid_argument("prompt of " + std::to_string(prompt.size()) +
                                " tokens + 1 generated exceeds the capacity of " +
                                std::to_string(capacity) + " tokens");
  }
}

// Bytes of a graph and its external weights: a proxy of a decode step's cost (memory-bound).
double weight_bytes(const ModelSpec& spec) {
  double total = 0;
  for (const std::string& path : {spec.path, spec.path + ".data"}) {
    std::error_code ec;  // a missing file (no external weights) counts 0
    const std::uintmax_t n = std::filesystem::file_size(path, ec);
    if (!ec) total += static_cast<double>(n);
  }
  return total;
}

double weight_bytes_ratio(const ModelSpec& draft, const ModelSpec& target) {
  const double t = weight_bytes(target);
  return t > 0 ? weight_bytes(draft) / t : 0.5;
}

}  // namespace

struct Engine::Impl {
  Impl(const ModelSpec& target_spec, const ModelSpec& draft_spec, const ProviderSpec& tp,
       const ProviderSpec& dp, const ModelSpec& eagle_spec, const NgramTable& table);
  void open_draft(const ModelSpec& draft_spec, const ModelSpec& target_spec, const ProviderSpec& dp,
                  bool shared);
  void open_eagle(const ModelSpec& eagle_spec, const ModelSpec& target_spec, const ProviderSpec& dp,
                  bool shared);
  DraftPolicy* policy_of(const Drafter* d);

  GenResult generate(const std::vector<int32_t>& prompt, const GenConfig& cfg,
                     const ChunkCallback& on_chunk, const std::atomic<bool>* cancel);
  void start(const std::vector<int32_t>& prompt, const GenConfig& cfg);
  bool prefill(const std::vector<int32_t>& prompt);
  int32_t select(const float* row);
  bool step();
  void verify(int n_draft, spec::Accept* accept);
  void accept_tree(const float* logits, int n_draft, spec::Accept* accept);
  void record(int cls, int n_draft, const spec::Accept& a, double t_draft);
  int next_k(int cls);
  bool commit(const int32_t* tokens, int n);
  bool cancelled() const { return cancel_ != nullptr && cancel_->load(std::memory_order_relaxed); }
  // The drafter that receives every target forward's hidden rows: the head's (null: none).
  Drafter* feature_sink() const {
    return target->hidden() != nullptr ? eagle_drafter.get() : nullptr;
  }

  std::unique_ptr<Model> target;
  std::unique_ptr<Drafter> ngram;
  std::shared_ptr<const NgramIndex> table_index;  // the bundle's n-gram table (null: none)
  std::unique_ptr<Drafter> model_drafter;         // null without a draft model
  std::unique_ptr<Drafter> eagle_drafter;         // null without an eagle head
  int vocab = 0;
  int capacity = 0;
  std::vector<int32_t> committed;  // int32 [capacity + 1] reserved: prompt + generated
  std::vector<int32_t> verify_in;  // int32 [kMaxDraftTokens + 1]: [last, d_1..d_k]
  std::vector<int32_t> tree_in;    // int32 [kMaxDraftTokens + 1]: tree_parents of a tree verify
  std::vector<int32_t> path;       // int32 [kMaxDraftTokens]: accepted drafts of a tree
  std::vector<int32_t> kept;       // int32 [kMaxDraftTokens + 1]: verify rows kept (0 + path)
  std::vector<float> path_hidden;  // float [(kMaxDraftTokens + 1) × H]: hidden rows of kept
  std::vector<float> p_rows;       // float [(kMaxDraftTokens + 1) × vocab]: processed target rows
  std::vector<float> scratch;      // float [vocab]: residual distribution
  std::vector<int32_t> idx;        // int32 [vocab]: process_logits scratch
  DraftOut draft_out;              // [kMaxDraftTokens + 1] tokens (+ the correction/bonus token)
  DraftPolicy ngram_policy;        // cost-aware draft length; measured costs persist per engine
  DraftPolicy model_policy;
  DraftPolicy eagle_policy;
  PrefixRecord target_prefix;  // tokens at the target KV's positions (kept across generations)
  std::mutex busy;             // generate() is not re-entrant

  // Per-generation state, reset by start().
  const GenConfig* cfg_ = nullptr;
  const ChunkCallback* on_chunk_ = nullptr;
  const std::atomic<bool>* cancel_ = nullptr;
  Drafter* drafter_ = nullptr;  // null for drafter "none"
  spec::SamplingParams params_;
  spec::Rng rng_;
  DraftPolicy* policy_ = nullptr;  // the drafter's policy when cfg.adaptive, else null
  int k_max_ = 0;                  // bound of the draft length
  double last_verify_s_ = 0;       // duration of the latest verify forward
  Clock::time_point t0_;
  GenResult result_;
};

Engine::Impl::Impl(const ModelSpec& target_spec, const ModelSpec& draft_spec,
                   const ProviderSpec& tp, const ProviderSpec& dp, const ModelSpec& eagle_spec,
                   const NgramTable& table) {
  const bool eagle = !eagle_spec.path.empty();
  if (eagle) validate_eagle(eagle_spec, target_spec);
  if (!table.keys.empty())  // validated before any model loads
    table_index = std::make_shared<const NgramIndex>(table, target_spec.vocab_size);
  // A target and a draft (or head) that alternate on the CPU share one thread pool (ort_loader.h).
  const bool shared = (!draft_spec.path.empty() || eagle) && tp.name == "cpu" && dp.name == "cpu";
  ModelSpec t = target_spec;
  if (!eagle) t.hidden_states.clear();  // features are read by an eagle head only
  target = std::make_unique<Model>(t, tp, kMaxWidth, prefill_width(tp), shared);
  vocab = target->vocab();
  capacity = target->capacity();
  ngram = make_ngram_drafter(table_index);
  if (!draft_spec.path.empty()) open_draft(draft_spec, target_spec, dp, shared);
  if (eagle) open_eagle(eagle_spec, target_spec, dp, shared);
  ngram_policy.reset_costs(kMaxDraftTokens);
  model_policy.reset_costs(kMaxDraftTokens);
  eagle_policy.reset_costs(kMaxDraftTokens);
  if (!draft_spec.path.empty())
    model_policy.set_prior_draft_cost(weight_bytes_ratio(draft_spec, target_spec));
  if (eagle) eagle_policy.set_prior_draft_cost(weight_bytes_ratio(eagle_spec, target_spec));
  committed.reserve(static_cast<size_t>(capacity) + 1);
  target_prefix.reserve(capacity);
  verify_in.assign(kMaxDraftTokens + 1, 0);
  tree_in.assign(kMaxDraftTokens + 1, -1);
  path.assign(kMaxDraftTokens, 0);
  kept.assign(kMaxDraftTokens + 1, 0);
  if (target->hidden() != nullptr) {
    path_hidden.assign(static_cast<size_t>(kMaxDraftTokens + 1) * target->hidden_size(), 0.0f);
  }
  p_rows.assign(static_cast<size_t>(kMaxDraftTokens + 1) * vocab, 0.0f);
  scratch.assign(vocab, 0.0f);
  idx.assign(vocab, 0);
  const bool stochastic = model_drafter != nullptr || eagle_drafter != nullptr;
  draft_out.reserve(kMaxDraftTokens + 1, vocab, stochastic);
  result_.tokens.reserve(capacity);
  result_.stats.accept_hist.reserve(kMaxDraftTokens + 1);
}

void Engine::Impl::open_draft(const ModelSpec& draft_spec, const ModelSpec& target_spec,
                              const ProviderSpec& dp, bool shared) {
  if (draft_spec.vocab_size != target_spec.vocab_size) {
    throw std::invalid_argument("draft vocab_size " + std::to_string(draft_spec.vocab_size) +
                                " differs from the target's " +
                                std::to_string(target_spec.vocab_size));
  }
  auto draft = std::make_unique<Model>(draft_spec, dp, kMaxWidth, prefill_width(dp), shared);
  capacity = std::min(capacity, draft->capacity());
  model_drafter = make_model_drafter(std::move(draft));
}

// The eagle head (validated by validate_eagle) on the draft provider.
void Engine::Impl::open_eagle(const ModelSpec& eagle_spec, const ModelSpec& target_spec,
                              const ProviderSpec& dp, bool shared) {
  auto head = std::make_unique<Model>(eagle_spec, dp, kMaxWidth, prefill_width(dp), shared);
  capacity = std::min(capacity, head->capacity());
  eagle_drafter = make_eagle_drafter(std::move(head), eagle_spec.token_map, target_spec.vocab_size,
                                     target->has_tree(), table_index);
}

// The cost-aware policy of a drafter (null: none).
DraftPolicy* Engine::Impl::policy_of(const Drafter* d) {
  if (d == nullptr) return nullptr;
  if (d == model_drafter.get()) return &model_policy;
  if (d == eagle_drafter.get()) return &eagle_policy;
  return &ngram_policy;
}

void Engine::Impl::start(const std::vector<int32_t>& prompt, const GenConfig& cfg) {
  cfg_ = &cfg;
  drafter_ = cfg.drafter == "ngram"   ? ngram.get()
             : cfg.drafter == "model" ? model_drafter.get()
             : cfg.drafter == "eagle" ? eagle_drafter.get()
                                      : nullptr;
  params_ = {cfg.temperature, cfg.top_k, cfg.top_p};
  rng_.reseed(cfg.seed);
  k_max_ = drafter_ == nullptr        ? 0
           : cfg.num_draft_tokens > 0 ? cfg.num_draft_tokens
                                      : drafter_->default_k();
  policy_ = cfg.adaptive ? policy_of(drafter_) : nullptr;
  // Prior per-position acceptance: a draft model agrees more often than a feature-level head,
  // which agrees more often than a lookup match.
  // Timings steer greedy decoding only: a seeded sample must not depend on them.
  if (policy_ != nullptr) {
    const double prior = policy_ == &model_policy ? 0.7 : policy_ == &eagle_policy ? 0.6 : 0.5;
    policy_->reset_acceptance(k_max_, prior, cfg.temperature == 0.0f);
  }
  result_.tokens.clear();
  result_.finish_reason.clear();
  result_.stats = GenStats();
  result_.stats.accept_hist.assign(k_max_ + 1, 0);
  result_.stats.n_prompt = static_cast<int>(prompt.size());
  committed.assign(prompt.begin(), prompt.end());
}

GenResult Engine::Impl::generate(const std::vector<int32_t>& prompt, const GenConfig& cfg,
                                 const ChunkCallback& on_chunk, const std::atomic<bool>* cancel) {
  std::unique_lock<std::mutex> lock(busy, std::try_to_lock);
  if (!lock.owns_lock()) {
    throw std::runtime_error("Engine.generate is already running on this engine (not re-entrant)");
  }
  validate_config(cfg, model_drafter != nullptr, eagle_drafter != nullptr);
  validate_prompt(prompt, vocab, capacity);
  t0_ = Clock::now();
  on_chunk_ = on_chunk ? &on_chunk : nullptr;
  cancel_ = cancel;
  start(prompt, cfg);
  if (prefill(prompt)) {
    while (step()) {
    }
  }
  result_.stats.t_total_s = seconds_since(t0_);
  // The target KV holds every committed token but the newest (cancelled mid-prefill: fewer).
  assert(target->n_past() <= static_cast<int>(committed.size()));
  if (target->spec().reuse_prefix) target_prefix.extend(committed.data(), target->n_past());
  result_.tokens.assign(committed.begin() + static_cast<int64_t>(prompt.size()), committed.end());
  GenResult out = result_;
  cfg_ = nullptr;
  on_chunk_ = nullptr;
  cancel_ = nullptr;
  return out;
}

// Prefills the target (and the drafter) and commits the first token. False when finished.
bool Engine::Impl::prefill(const std::vector<int32_t>& prompt) {
  const auto t = Clock::now();
  const int n = static_cast<int>(prompt.size());
  const int keep = target_prefix.shared(prompt.data(), n, std::min(n - 1, target->n_past()));
  target_prefix.truncate(keep);
  target->rewind_to(keep);
  result_.stats.n_prompt_reused = keep;
  // The head sees the features of each prefill chunk, before its begin().
  HiddenFn on_hidden;
  if (Drafter* f = feature_sink()) {
    on_hidden = [f](int pos, const float* h, int n) { f->on_target_features(pos, h, n); };
  }
  const float* row = target->prefill(prompt.data() + keep, n - keep, cancel_, nullptr, on_hidden);
  if (row == nullptr) {
    result_.finish_reason = "cancelled";
    return false;
  }
  const int32_t first = select(row);
  if (drafter_ != nullptr) drafter_->begin(prompt, *cfg_);
  result_.stats.t_prefill_s = seconds_since(t);
  return !commit(&first, 1);
}

// The next token from a target logits row: argmax when greedy, else a sample of the processed
// distribution.
int32_t Engine::Impl::select(const float* row) {
  if (cfg_->temperature == 0.0f) return spec::argmax(row, vocab);
  spec::process_logits(row, vocab, params_, p_rows.data(), idx.data());
  return spec::sample(p_rows.data(), vocab, rng_);
}

// One draft → verify → accept → commit step. False when generation is finished.
bool Engine::Impl::step() {
  if (cancelled()) {
    result_.finish_reason = "cancelled";
    return false;
  }
  const int len = static_cast<int>(committed.size());
  const int room = capacity - len;  // tokens that can still be committed
  if (room <= 0) {
    result_.finish_reason = "length";
    return false;
  }
  const int budget = cfg_->max_new_tokens - result_.stats.n_generated;
  // The drafter's class for this step (-1: nothing to propose), then its draft length.
  const int cls =
      drafter_ != nullptr ? std::min(drafter_->draft_class(committed), kDraftClasses - 1) : -1;
  const int k = cls < 0 ? 0 : std::min({next_k(cls), room - 1, budget - 1});
  int n_draft = 0;
  double t_draft = 0;
  draft_out.tree = false;
  if (k > 0) {
    const auto t = Clock::now();
    // A drafter that builds a tree (it knows when it may) widens the verify up to this.
    draft_out.max_n = std::min(kMaxDraftTokens, room - 1);
    n_draft = drafter_->propose(committed, k, draft_out);
    t_draft = seconds_since(t);
    result_.stats.t_draft_s += t_draft;
  }
  spec::Accept a;
  verify(n_draft, &a);
  if (k > 0) drafter_->on_accept(a.n_accept);
  record(cls, n_draft, a, t_draft);
  // The chunk is d_1..d_n followed by the correction/bonus token, in place in draft_out.
  draft_out.tokens[a.n_accept] = a.next;
  return !commit(draft_out.tokens.data(), a.n_accept + 1);
}

// Stats and the policy's observation of one step (n_draft proposed, a accepted).
void Engine::Impl::record(int cls, int n_draft, const spec::Accept& a, double t_draft) {
  GenStats& st = result_.stats;
  ++st.n_steps;
  st.n_draft += n_draft;
  st.n_accept += a.n_accept;
  // A path is never longer than the main chain (siblings are leaves), so k_max + 1 entries do.
  assert(a.n_accept < static_cast<int>(st.accept_hist.size()));
  ++st.accept_hist[a.n_accept];
  // The draft length k applies to the main chain: how far the target went along it.
  const int n_chain = draft_out.tree ? draft_out.n_chain : n_draft;
  int chain_accept = draft_out.tree ? 0 : a.n_accept;
  while (chain_accept < a.n_accept && chain_accept < n_chain && path[chain_accept] == chain_accept)
    ++chain_accept;
  if (draft_out.tree) {
    ++st.n_tree;
    st.n_off_chain += chain_accept < a.n_accept;
  }
  if (policy_ != nullptr) {
    policy_->observe(cls, n_chain, chain_accept, n_draft + 1, last_verify_s_, t_draft);
  }
}

// Target forward over [last, d_1..d_k], acceptance, rollback.
void Engine::Impl::verify(int n_draft, spec::Accept* accept) {
  const int len = static_cast<int>(committed.size());
  verify_in[0] = committed.back();
  std::copy_n(draft_out.tokens.data(), n_draft, verify_in.data() + 1);
  const bool tree = draft_out.tree && n_draft > 0;
  if (tree) std::copy_n(draft_out.parent.data(), n_draft, tree_in.data() + 1);  // [0] = -1
  const auto t = Clock::now();
  const float* logits =  // [(k+1) × vocab]
      target->forward(verify_in.data(), n_draft + 1, nullptr, tree ? tree_in.data() : nullptr);
  last_verify_s_ = seconds_since(t);
  result_.stats.t_verify_s += last_verify_s_;
  if (tree) return accept_tree(logits, n_draft, accept);
  if (Drafter* f = feature_sink()) f->on_target_features(len - 1, target->hidden(), n_draft + 1);
  const int32_t* d = draft_out.tokens.data();
  if (cfg_->temperature == 0.0f) {
    *accept = spec::accept_greedy(logits, vocab, d, n_draft);
  } else {
    auto p_row = [&](int i) {
      float* p = p_rows.data() + static_cast<size_t>(i) * vocab;
      spec::process_logits(logits + static_cast<size_t>(i) * vocab, vocab, params_, p, idx.data());
      return static_cast<const float*>(p);
    };
    const float* q = draft_out.has_q ? draft_out.q.data() : nullptr;
    *accept = spec::accept_sampling(p_row, q, d, n_draft, vocab, rng_, scratch.data());
  }
  // KV keeps last + the accepted drafts; the correction/bonus token is the new "last".
  target->rewind_to(len + accept->n_accept);
}

// Greedy acceptance of a tree verify (logits: [(n_draft + 1) × vocab]): the accepted path's
// tokens become draft_out.tokens[0..n_accept), its KV rows and hidden rows move into place.
void Engine::Impl::accept_tree(const float* logits, int n_draft, spec::Accept* accept) {
  if (cfg_->temperature != 0.0f) {
    throw std::logic_error("a draft tree was proposed for sampled decoding");
  }
  int32_t* d = draft_out.tokens.data();
  *accept =
      spec::accept_greedy_tree(logits, vocab, d, draft_out.parent.data(), n_draft, path.data());
  const int n = accept->n_accept;
  kept[0] = 0;
  for (int j = 0; j < n; ++j) {
    kept[j + 1] = path[j] + 1;
    d[j] = d[path[j]];  // in place: path[j] >= j, and later j read only later drafts
  }
  const int len = static_cast<int>(committed.size());
  if (Drafter* f = feature_sink()) {
    const float* hidden = target->hidden();
    const size_t h = target->hidden_size();
    for (int j = 0; j <= n; ++j) {
      std::copy_n(hidden + kept[j] * h, h, path_hidden.data() + j * h);
    }
    f->on_target_features(len - 1, path_hidden.data(), n + 1);
  }
  target->keep_rows(len - 1, kept.data(), n + 1);
}

// Draft length of the next step: the cost-aware choice (draft_policy.h) when adaptive, else
// the configured maximum.
int Engine::Impl::next_k(int cls) { return policy_ != nullptr ? policy_->choose(cls) : k_max_; }

// Commits tokens[0..n): truncated after the first EOS and to the max_new_tokens budget, then
// on_chunk. True when generation is finished (finish_reason set: "stop" > "eos" > "length").
bool Engine::Impl::commit(const int32_t* tokens, int n) {
  GenStats& st = result_.stats;
  int take = std::min(n, cfg_->max_new_tokens - st.n_generated);
  bool eos = false;
  for (int i = 0; i < take && !eos; ++i) {
    const auto& ids = cfg_->eos_ids;
    if (std::find(ids.begin(), ids.end(), tokens[i]) != ids.end()) {
      take = i + 1;
      eos = true;
    }
  }
  const size_t at = committed.size();
  committed.insert(committed.end(), tokens, tokens + take);
  if (st.n_generated == 0) st.t_first_token_s = seconds_since(t0_);
  st.n_generated += take;
  if (on_chunk_ != nullptr && (*on_chunk_)(committed.data() + at, take)) {
    result_.finish_reason = "stop";
  } else if (eos) {
    result_.finish_reason = "eos";
  } else if (st.n_generated >= cfg_->max_new_tokens) {
    result_.finish_reason = "length";
  }
  return !result_.finish_reason.empty();
}

Engine::Engine(const ModelSpec& target, const ModelSpec& draft, const ProviderSpec& target_provider,
               const ProviderSpec& draft_provider, const ModelSpec& eagle, const NgramTable& table)
    : impl_(std::make_unique<Impl>(target, draft, target_provider, draft_provider, eagle, table)) {}

Engine::~Engine() = default;

bool Engine::has_draft() const { return impl_->model_drafter != nullptr; }

bool Engine::has_eagle() const { return impl_->eagle_drafter != nullptr; }

int Engine::capacity() const { return impl_->capacity; }

GenResult Engine::generate(const std::vector<int32_t>& prompt, const GenConfig& cfg,
                           const ChunkCallback& on_chunk, const std::atomic<bool>* cancel) {
  return impl_->generate(prompt, cfg, on_chunk, cancel);
}

void Engine::forget(int keep) {
  if (keep < 0) throw std::invalid_argument("forget: keep must be >= 0, got " + num(keep));
  std::unique_lock<std::mutex> lock(impl_->busy, std::try_to_lock);
  if (!lock.owns_lock()) throw std::runtime_error("Engine.forget while a generation runs");
  impl_->target_prefix.truncate(keep);
  for (Drafter* d : {impl_->ngram.get(), impl_->model_drafter.get(), impl_->eagle_drafter.get()}) {
    if (d != nullptr) d->forget(keep);
  }
}

}  // namespace edgespec

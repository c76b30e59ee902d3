// Feature-level draft head (EAGLE-style; docs/bundle-format.md, models.eagle).
//
// Head position p consumes (t_{p+1}, f_p), f_p the target's feature at position p, and predicts
// f^_{p+1} and the logits of t_{p+2} over the draft vocabulary (token_map: draft id -> target id).
// State: a feature store [capacity × H] indexed by position, filled by on_target_features();
// positions 0..n_true_-1 of it hold TRUE features (their tokens are committed: the rows of a verify
// past its first one are true only once on_accept() says they were accepted). The head KV holds
// m_ positions, all computed from true features and committed tokens.
// propose(committed, k), L = committed length (true features cover 0..L-2): rewind the head to
// m_, catch up over positions m_..L-2 (t_{p+1} = committed[p+1], f_p from the store); the last
// row gives d_1 and f^_{L-1}; d_{i+1} comes from feeding (d_i, f^) at the next position. Then
// m_ = L-1: the positions fed with predicted features are forgotten at the next rewind.
// Sources, as drafter "ngram" picks them (draft_class): below a 2-token match (lookup.h
// kTextMatch) the bundle's n-gram table drafts when it has a confident continuation
// (GenConfig.ngram_table; ngram_table.h); else, when the last copy_match tokens (default 1)
// occurred earlier (prompt lookup, matched up to ngram_max tokens), the step proposes what
// followed them; only where neither has anything does the head draft, and it catches up over
// the gap then. Prompt lookup and the table are free and, where they have a draft, right as
// often as this head (README, "Distilled draft head"); the head fills the steps where prompt
// lookup would propose nothing. Draft class: 0 for the head, the match length for a copy,
// TableStep::kClass + context length for the table.
// Draft length: a copy may run up to k (default 16, as prompt lookup); the head's chain stops at
// kHeadDepth, at k, or once its confidence drops below draft_confidence, whichever comes first.
// Siblings (greedy, on a target that verifies trees, GenConfig.sibling_min > 0): at each depth i
// of the head's chain, its second choice s_i joins the verify as a leaf beside d_i when the
// head's own probability of reaching depth i and picking s_i, prod_{j<i} p1_j * p2_i, is at least
// sibling_min; the target keeps whichever of the two it agrees with. A one-level-wide EAGLE-2
// tree. Off by default: on a 2-core CPU a verify row costs 4-10% of a step, and siblings at
// 0.1-0.3 measured neutral against chains (README, "Draft trees").
// Prefix reuse: the engine feeds the store every target forward, whichever drafter is active, so
// it holds the true features of every position the target keeps; the head itself catches up
// from position 0 in every generation.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "drafter.h"
#include "lookup.h"
#include "model.h"
#include "ngram_table.h"
#include "spec_math.h"

namespace edgespec {
namespace {

// Longest chain the head drafts in one step. Its acceptance falls with depth (it feeds on its
// own predicted features), and the policy's per-position estimates for deep positions borrow
// from shallower ones, so deeper head chains mostly cost verify width; a copy is not bound by it.
constexpr int kHeadDepth = 4;

class EagleDrafter final : public Drafter {
 public:
  EagleDrafter(std::unique_ptr<Model> head, std::vector<int32_t> token_map, int target_vocab,
               bool tree_ok, std::shared_ptr<const NgramIndex> table)
      : head_(std::move(head)),
        map_(std::move(token_map)),
        target_vocab_(target_vocab),
        h_(head_->hidden_size()),
        store_(static_cast<size_t>(head_->capacity()) * h_, 0.0f),
        q_draft_(head_->vocab(), 0.0f),
        idx_(head_->vocab(), 0),
        table_(std::move(table)),
        tree_ok_(tree_ok) {
    if (head_->hidden() == nullptr || h_ <= 0) {
      throw std::invalid_argument("eagle head: hidden_states output and hidden_size are required");
    }
    if (static_cast<int>(map_.size()) != head_->vocab()) {
      throw std::invalid_argument("eagle token_map has " + std::to_string(map_.size()) +
                                  " entries, the head's vocab_size is " +
                                  std::to_string(head_->vocab()));
    }
  }

  // Called after the target prefill delivered the prompt's features (all true). The head does
  // not run here: it catches up over the prompt when it first drafts (catch_up), so a generation
  // that prompt lookup and the table serve throughout (a long passage to summarize) never pays
  // for it, and the first token never waits for it.
  void begin(const std::vector<int32_t>& prompt, const GenConfig& cfg) override {
    greedy_ = cfg.temperature == 0.0f;
    sibling_min_ = cfg.sibling_min;
    tree_ = tree_ok_ && greedy_ && sibling_min_ > 0;
    params_ = {cfg.temperature, cfg.top_k, cfg.top_p};
    rng_.reseed(cfg.seed ^ 0x9e3779b97f4a7c15ULL);  // a stream independent of the target's
    copy_min_ = cfg.copy_match;
    min_confidence_ = cfg.draft_confidence;
    copy_max_ = cfg.ngram_max;
    use_table_ = table_ != nullptr && cfg.ngram_table;
    const int len = static_cast<int>(prompt.size());
    if (n_written_ != len) {
      throw std::runtime_error("eagle drafter: the target's features cover " +
                               std::to_string(n_written_) + " positions, the prompt has " +
                               std::to_string(len));
    }
    n_true_ = len;
    head_->rewind_to(0);
    m_ = 0;
  }

  // The source of this step's draft, as drafter "ngram" picks it where the text offers a copy:
  // the table below a kTextMatch-token match (or below copy_match, whichever is longer) when it
  // has a continuation, else a copy from a copy_match-token match; the head where neither has
  // anything (where prompt lookup would propose nothing, or only a copy shorter than copy_match).
  int draft_class(const std::vector<int32_t>& committed) override {
    const int m = match_.find(committed, copy_min_ > 0 ? 1 : 0, copy_max_);  // longest match
    table_step_.clear();
    if (m < std::max(lookup::kTextMatch, copy_min_) && use_table_) {
      const int cls = table_step_.find(table_.get(), committed);
      if (cls >= 0) return cls;
    }
    if (m >= copy_min_ && m > 0) return m;  // a copy: class = match length
    match_.clear();
    return 0;  // the head drafts
  }

  int propose(const std::vector<int32_t>& committed, int k, DraftOut& out) override {
    if (table_step_.found() || match_.found()) {
      out.has_q = false;  // a deterministic proposal: q is one-hot
      const bool table = table_step_.found();
      out.set_chain(table ? table_step_.copy(k, out.tokens.data())
                          : match_.copy(committed, k, out.tokens.data()));
      return out.n;
    }
    out.has_q = !greedy_;
    out.set_chain(head_chain(committed, std::min(k, kHeadDepth), out));
    for (int i = 0; tree_ && i < out.n_chain && out.n < out.max_n; ++i) {
      if (sibling_p_[i] >= sibling_min_) out.add_leaf(i, sibling_[i]);  // beside d_i: row i
    }
    return out.n;
  }

  // The head's chain after `committed`: up to k drafts into out.tokens (and q rows when
  // sampling), fewer once its confidence drops below min_confidence_; records each depth's
  // second choice for siblings. Returns the count.
  int head_chain(const std::vector<int32_t>& committed, int k, DraftOut& out) {
    int32_t* d = out.tokens.data();
    const float* logits = catch_up(committed.data(), static_cast<int>(committed.size()));
    double confidence = 1.0;  // the head's own probability that all drafts so far are right
    for (int i = 0; i < k; ++i) {
      d[i] = choose(logits, i, out);
      const TopTwo t = top_two(logits);
      sibling_[i] = map_[t.second];
      sibling_p_[i] = confidence * t.p2;  // reach depth i, then pick the second choice
      confidence *= t.p1;
      if (i + 1 == k || confidence < min_confidence_) return i + 1;  // later drafts: likely waste
      // f^ of the latest row; forward() copies it into its features buffer before running.
      const float* f_hat = head_->hidden() + static_cast<size_t>(head_->last_width() - 1) * h_;
      logits = head_->forward(&d[i], 1, f_hat);
    }
    return 0;  // k == 0
  }

  void on_accept(int n_accept) override {
    // Rows 0..n_accept of the latest verify (positions pos .. pos+n_accept) are true.
    n_true_ = std::min(verify_pos_ + 1 + n_accept, n_written_);
    head_->rewind_to(m_);
  }

  void on_target_features(int pos, const float* hidden, int n) override {
    if (pos < 0 || n < 1 || pos > n_written_ || pos + n > head_->capacity()) {
      throw std::runtime_error("eagle drafter: target features at positions " +
                               std::to_string(pos) + ".." + std::to_string(pos + n - 1) +
                               " (written up to " + std::to_string(n_written_) + ", capacity " +
                               std::to_string(head_->capacity()) + ")");
    }
    std::copy_n(hidden, static_cast<size_t>(n) * h_, store_.data() + static_cast<size_t>(pos) * h_);
    n_written_ = pos + n;
    n_true_ = pos + 1;  // the target KV holds committed tokens only; rows past the first pend
    verify_pos_ = pos;
  }

  // A copy's bound; the head's own chain stops at kHeadDepth.
  int default_k() const override { return lookup::kCopyDraft; }
  bool stochastic(const GenConfig& cfg) const override { return cfg.temperature > 0.0f; }

 private:
  // Runs the head over positions m_..len-2 with true features; returns the last logits row.
  const float* catch_up(const int32_t* committed, int len) {
    if (n_true_ < len - 1 || m_ > len - 2) {
      throw std::runtime_error("eagle drafter: committed length " + std::to_string(len) +
                               " with true features for " + std::to_string(n_true_) +
                               " positions and " + std::to_string(m_) + " head positions");
    }
    head_->rewind_to(m_);
    const float* f = store_.data() + static_cast<size_t>(m_) * h_;
    const float* row = head_->prefill(committed + m_ + 1, len - 1 - m_, nullptr, f);
    m_ = len - 1;
    return row;
  }

  // The head's two most likely tokens under softmax(row) over the draft vocabulary: p1 of the
  // argmax (its confidence), `second` (the largest other logit, the lowest id on ties) and p2.
  struct TopTwo {
    float p1 = 1;
    int second = 0;  // draft id (the argmax itself for a one-token vocabulary)
    double p2 = 0;
  };
  TopTwo top_two(const float* row) const {
    const int dv = head_->vocab();
    const int first = spec::argmax(row, dv);
    const float top = row[first];
    TopTwo t;
    t.second = first == 0 && dv > 1 ? 1 : 0;
    double sum = 0;
    for (int v = 0; v < dv; ++v) {
      sum += std::exp(static_cast<double>(row[v] - top));
      if (v != first && row[v] > row[t.second]) t.second = v;
    }
    t.p1 = static_cast<float>(1.0 / sum);
    t.p2 = dv > 1 ? std::exp(static_cast<double>(row[t.second] - top)) / sum : 0.0;
    return t;
  }

  // d_i from a draft-vocabulary logits row: argmax (greedy), or a sample of q_i, the processed
  // draft distribution scattered into target ids (out.q row i, float [target_vocab]).
  int32_t choose(const float* row, int i, DraftOut& out) {
    const int dv = head_->vocab();
    if (greedy_) return map_[spec::argmax(row, dv)];
    spec::process_logits(row, dv, params_, q_draft_.data(), idx_.data());
    float* q = out.q.data() + static_cast<size_t>(i) * target_vocab_;
    std::fill_n(q, target_vocab_, 0.0f);
    for (int v = 0; v < dv; ++v) q[map_[v]] = q_draft_[v];
    return map_[spec::sample(q_draft_.data(), dv, rng_)];
  }

  std::unique_ptr<Model> head_;
  std::vector<int32_t> map_;    // int32 [draft vocab]: draft id -> target id
  int target_vocab_;            // width of a q row
  int h_;                       // feature width H
  std::vector<float> store_;    // float [capacity × H]: target feature of each position
  std::vector<float> q_draft_;  // float [draft vocab]: processed draft distribution
  std::vector<int32_t> idx_;    // int32 [draft vocab]: process_logits scratch
  spec::SamplingParams params_;
  spec::Rng rng_;
  bool greedy_ = true;
  double min_confidence_ = 0.3;  // stop drafting below this confidence (draft_confidence)
  int n_written_ = 0;            // store rows 0..n_written_-1 were written this generation
  int n_true_ = 0;               // store rows 0..n_true_-1 are true features
  int verify_pos_ = 0;           // first position of the latest on_target_features()
  int m_ = 0;                    // head KV positions computed from true features
  int copy_min_ = 1;         // copy path: shortest match that makes a lookup proposal (0 = never)
  int copy_max_ = 8;         // copy path: matches are counted up to this length (ngram_max)
  lookup::StepMatch match_;  // this step's copy match (draft_class -> propose)
  std::shared_ptr<const NgramIndex> table_;  // the bundle's n-gram table (null: none)
  bool use_table_ = false;                   // this generation drafts from it (ngram_table)
  TableStep table_step_;                     // this step's table draft, when there is no copy
  bool tree_ok_;                             // the target verifies trees (Model::has_tree)
  bool tree_ = false;             // this generation may draft siblings (tree_ok_, greedy, > 0)
  double sibling_min_ = 0;        // GenConfig.sibling_min
  int32_t sibling_[kHeadDepth];   // int32 [kHeadDepth]: the head's second choice per depth
  double sibling_p_[kHeadDepth];  // [kHeadDepth]: its probability of being the path (head's)
};

}  // namespace

std::unique_ptr<Drafter> make_eagle_drafter(std::unique_ptr<Model> head,
                                            std::vector<int32_t> token_map, int target_vocab,
                                            bool tree_ok, std::shared_ptr<const NgramIndex> table) {
  return std::make_unique<EagleDrafter>(std::move(head), std::move(token_map), target_vocab,
                                        tree_ok, std::move(table));
}

}  // namespace edgespec

// Draft-model drafter: a small decoder run through the same Model class, with its own KV.
// Convention: after propose() the draft KV holds committed[0..C) + d_1..d_{k-1} (C = committed
// length then); on_accept(n) rewinds it to C + min(n, k-1) valid entries, and the next propose()
// first feeds the committed tokens it has not seen (catch-up: the correction/bonus token, plus
// d_k when all k were accepted).
// Prefix reuse (ModelSpec.reuse_prefix of the draft graph): fed_ records the committed tokens at
// the draft KV's positions, so begin() prefills only what a new prompt does not share with them.
#include <algorithm>
#include <stdexcept>

#include "drafter.h"
#include "model.h"
#include "prefix.h"
#include "spec_math.h"

namespace edgespec {
namespace {

class ModelDrafter final : public Drafter {
 public:
  explicit ModelDrafter(std::unique_ptr<Model> model)
      : model_(std::move(model)), idx_(model_->vocab(), 0), reuse_(model_->spec().reuse_prefix) {
    fed_.reserve(model_->capacity());
  }

  void begin(const std::vector<int32_t>& prompt, const GenConfig& cfg) override {
    greedy_ = cfg.temperature == 0.0f;
    params_ = {cfg.temperature, cfg.top_k, cfg.top_p};
    rng_.reseed(cfg.seed ^ 0x5deece66dULL);  // a stream independent of the target's
    const int len = static_cast<int>(prompt.size());
    const int keep = reuse_ ? fed_.shared(prompt.data(), len, model_->n_past()) : 0;
    fed_.truncate(keep);
    model_->rewind_to(keep);
    if (keep < len) model_->prefill(prompt.data() + keep, len - keep);
    if (reuse_) fed_.extend(prompt.data(), len);
    committed_at_propose_ = 0;
    k_last_ = 0;
  }

  int propose(const std::vector<int32_t>& committed, int k, DraftOut& out) override {
    const int len = static_cast<int>(committed.size());
    const float* row = catch_up(committed.data(), len);
    if (reuse_) fed_.extend(committed.data(), len);  // the drafts go after: positions >= len
    out.has_q = !greedy_;
    const int vocab = model_->vocab();
    for (int i = 0; i < k; ++i) {
      int32_t d;
      if (greedy_) {
        d = spec::argmax(row, vocab);
      } else {
        // q_i = processed draft distribution; d_i ~ q_i (recorded for the acceptance test).
        float* q = out.q.data() + static_cast<size_t>(i) * vocab;
        spec::process_logits(row, vocab, params_, q, idx_.data());
        d = spec::sample(q, vocab, rng_);
      }
      out.tokens[i] = d;
      if (i + 1 < k) row = model_->forward(&d, 1);
    }
    out.n = k;
    committed_at_propose_ = len;
    k_last_ = k;
    return k;
  }

  void on_accept(int n_accept) override {
    // Valid entries: the committed prefix plus the accepted drafts that were fed (d_1..d_{k-1}).
    model_->rewind_to(committed_at_propose_ + std::min(n_accept, k_last_ - 1));
  }

  void forget(int keep) override { fed_.truncate(keep); }

  int default_k() const override { return 4; }
  bool stochastic(const GenConfig& cfg) const override { return cfg.temperature > 0.0f; }

 private:
  // Feeds committed[n_past..len) in chunks; returns the logits row of the last one [vocab].
  const float* catch_up(const int32_t* committed, int len) {
    const int from = model_->n_past();
    if (from >= len) {
      throw std::runtime_error("draft model holds " + std::to_string(from) +
                               " tokens, committed only " + std::to_string(len));
    }
    return model_->prefill(committed + from, len - from);
  }

  std::unique_ptr<Model> model_;
  std::vector<int32_t> idx_;  // int32 [vocab]: process_logits scratch
  spec::SamplingParams params_;
  spec::Rng rng_;
  bool greedy_ = true;
  int committed_at_propose_ = 0;  // C: committed length at the last propose()
  int k_last_ = 0;                // k of the last propose()
  bool reuse_ = false;            // the draft graph's ModelSpec.reuse_prefix
  PrefixRecord fed_;              // committed tokens at the draft KV's positions
};

}  // namespace

std::unique_ptr<Drafter> make_model_drafter(std::unique_ptr<Model> draft) {
  return std::make_unique<ModelDrafter>(std::move(draft));
}

}  // namespace edgespec

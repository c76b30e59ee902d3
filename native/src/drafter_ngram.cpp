// Prompt-lookup drafter: the earlier occurrence of the sequence's suffix with the longest match
// (ngram_min..ngram_max tokens, the most recent on ties) proposes the tokens that followed it
// (lookup.h). Its draft class is the match length.
#include "drafter.h"
#include "lookup.h"

namespace edgespec {
namespace {

class NgramDrafter final : public Drafter {
 public:
  void begin(const std::vector<int32_t>& prompt, const GenConfig& cfg) override {
    ngram_max_ = cfg.ngram_max;
    ngram_min_ = cfg.ngram_min;
  }

  int draft_class(const std::vector<int32_t>& committed) override {
    const int n = match_.find(committed, ngram_min_, ngram_max_);
    return n > 0 ? n : -1;
  }

  int propose(const std::vector<int32_t>& committed, int k, DraftOut& out) override {
    out.has_q = false;
    out.n = match_.found() ? match_.copy(committed, k, out.tokens.data()) : 0;
    return out.n;
  }

  void on_accept(int n_accept) override {}
  int default_k() const override { return 8; }
  bool stochastic(const GenConfig& cfg) const override { return false; }

 private:
  int ngram_max_ = 3;
  int ngram_min_ = 1;
  lookup::StepMatch match_;  // this step's match (draft_class -> propose)
};

}  // namespace

std::unique_ptr<Drafter> make_ngram_drafter() { return std::make_unique<NgramDrafter>(); }

}  // namespace edgespec

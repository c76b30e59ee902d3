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
    match_len_ = -1;
  }

  int draft_class(const std::vector<int32_t>& committed) override {
    match_len_ = static_cast<int>(committed.size());
    match_ = lookup::find_longest(committed.data(), match_len_, ngram_min_, ngram_max_);
    return match_.end >= 0 ? match_.len : -1;
  }

  int propose(const std::vector<int32_t>& committed, int k, DraftOut& out) override {
    out.has_q = false;
    const int len = static_cast<int>(committed.size());
    if (len != match_len_) draft_class(committed);
    out.n = match_.end < 0 ? 0
                           : lookup::copy_continuation(committed.data(), len, match_.end, k,
                                                       out.tokens.data());
    return out.n;
  }

  void on_accept(int n_accept) override { match_len_ = -1; }
  int default_k() const override { return 8; }
  bool stochastic(const GenConfig& cfg) const override { return false; }

 private:
  int ngram_max_ = 3;
  int ngram_min_ = 1;
  lookup::Match match_;  // the match found by draft_class() for a sequence of match_len_ tokens
  int match_len_ = -1;
};

}  // namespace

std::unique_ptr<Drafter> make_ngram_drafter() { return std::make_unique<NgramDrafter>(); }

}  // namespace edgespec

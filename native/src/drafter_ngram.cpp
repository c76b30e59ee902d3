// Prompt-lookup drafter: the most recent earlier occurrence of the last n tokens (n from
// ngram_max down to ngram_min) proposes the tokens that followed it (lookup.h).
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

  int propose(const std::vector<int32_t>& committed, int k, DraftOut& out) override {
    out.has_q = false;
    const int len = static_cast<int>(committed.size());
    out.n = lookup::propose(committed.data(), len, ngram_max_, ngram_min_, k, out.tokens.data());
    return out.n;
  }

  void on_accept(int n_accept) override {}
  int default_k() const override { return 8; }
  bool stochastic(const GenConfig& cfg) const override { return false; }

 private:
  int ngram_max_ = 3;
  int ngram_min_ = 1;
};

}  // namespace

std::unique_ptr<Drafter> make_ngram_drafter() { return std::make_unique<NgramDrafter>(); }

}  // namespace edgespec

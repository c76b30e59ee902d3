// Prompt-lookup drafter: the most recent earlier occurrence of the last n tokens (n from
// ngram_max down to ngram_min) proposes the tokens that followed it.
#include <algorithm>

#include "drafter.h"

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
    out.n = 0;
    const int len = static_cast<int>(committed.size());
    for (int n = std::min(ngram_max_, len - 1); n >= ngram_min_ && out.n == 0; --n) {
      const int end = find_match(committed.data(), len, n);
      if (end >= 0) out.n = copy_continuation(committed.data(), len, end, k, out.tokens.data());
    }
    return out.n;
  }

  void on_accept(int n_accept) override {}
  int default_k() const override { return 8; }
  bool stochastic(const GenConfig& cfg) const override { return false; }

 private:
  // The largest end e < len - 1 with seq[e-n+1..e] == seq[len-n..len-1], or -1.
  static int find_match(const int32_t* seq, int len, int n) {
    const int32_t* suffix = seq + len - n;
    for (int e = len - 2; e >= n - 1; --e) {
      if (seq[e] == suffix[n - 1] && std::equal(suffix, suffix + n - 1, seq + e - n + 1)) return e;
    }
    return -1;
  }

  // Proposes what followed seq[end]: out[i] = s[end + 1 + i] where s is seq followed by out
  // itself (an overlapping copy, so a period-p repetition proposes k tokens, not p).
  static int copy_continuation(const int32_t* seq, int len, int end, int k, int32_t* out) {
    for (int i = 0; i < k; ++i) {
      const int src = end + 1 + i;
      out[i] = src < len ? seq[src] : out[src - len];
    }
    return k;
  }

  int ngram_max_ = 3;
  int ngram_min_ = 1;
};

}  // namespace

std::unique_ptr<Drafter> make_ngram_drafter() { return std::make_unique<NgramDrafter>(); }

}  // namespace edgespec

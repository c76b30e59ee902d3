// Prompt-lookup drafter: the earlier occurrence of the sequence's suffix with the longest match
// (ngram_min..ngram_max tokens, the most recent on ties) proposes the tokens that followed it
// (lookup.h). Its draft class is the match length. Where the match is shorter than 2 tokens and
// the bundle has an n-gram table (GenConfig.ngram_table), the table drafts instead (its own
// classes: TableStep::kClass + the context length behind its first draft).
#include <memory>

#include "drafter.h"
#include "lookup.h"
#include "ngram_table.h"

namespace edgespec {
namespace {

class NgramDrafter final : public Drafter {
 public:
  explicit NgramDrafter(std::shared_ptr<const NgramIndex> table) : table_(std::move(table)) {}

  void begin(const std::vector<int32_t>& prompt, const GenConfig& cfg) override {
    ngram_max_ = cfg.ngram_max;
    ngram_min_ = cfg.ngram_min;
    use_table_ = table_ != nullptr && cfg.ngram_table;
  }

  int draft_class(const std::vector<int32_t>& committed) override {
    const int n = match_.find(committed, ngram_min_, ngram_max_);
    table_step_.clear();
    if (n < lookup::kTextMatch && use_table_) {
      const int cls = table_step_.find(table_.get(), committed);
      if (cls >= 0) return cls;
    }
    return n > 0 ? n : -1;
  }

  int propose(const std::vector<int32_t>& committed, int k, DraftOut& out) override {
    out.has_q = false;
    if (table_step_.found()) {
      out.set_chain(table_step_.copy(k, out.tokens.data()));
    } else {
      out.set_chain(match_.found() ? match_.copy(committed, k, out.tokens.data()) : 0);
    }
    return out.n;
  }

  void on_accept(int n_accept) override {}
  int default_k() const override { return lookup::kCopyDraft; }
  bool stochastic(const GenConfig& cfg) const override { return false; }

 private:
  std::shared_ptr<const NgramIndex> table_;  // the bundle's n-gram table (null: none)
  bool use_table_ = false;                   // this generation drafts from the table
  int ngram_max_ = 3;
  int ngram_min_ = 1;
  lookup::StepMatch match_;  // this step's match (draft_class -> propose)
  TableStep table_step_;     // this step's table draft, when the match was too short
};

}  // namespace

std::unique_ptr<Drafter> make_ngram_drafter(std::shared_ptr<const NgramIndex> table) {
  return std::make_unique<NgramDrafter>(std::move(table));
}

}  // namespace edgespec

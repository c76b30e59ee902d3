// Prompt-lookup drafter: the earlier occurrence of the sequence's suffix with the longest match
// (ngram_min..ngram_max tokens, the most recent on ties) proposes the tokens that followed it
// (lookup.h). Its draft class is the match length. Where the match is shorter than 2 tokens and
// the bundle has an n-gram table (GenConfig.ngram_table), the table drafts instead (its classes:
// kTableClass + the context length behind its first draft).
#include <memory>

#include "draft_policy.h"
#include "drafter.h"
#include "lookup.h"
#include "ngram_table.h"

namespace edgespec {
namespace {

// Table drafts get their own policy classes, above any match length that commonly occurs.
constexpr int kTableClass = kDraftClasses - 1 - NgramIndex::kMaxOrder;
// A match this long drafts from the text itself; the table is asked only below it.
constexpr int kTextMatch = 2;

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
    n_table_ = 0;
    if (n < kTextMatch && use_table_) {
      int order = 0;
      n_table_ = table_->draft(committed.data(), static_cast<int>(committed.size()),
                               NgramIndex::kMaxDraft, table_draft_, &order);
      if (n_table_ > 0) return kTableClass + order;
    }
    return n > 0 ? n : -1;
  }

  int propose(const std::vector<int32_t>& committed, int k, DraftOut& out) override {
    out.has_q = false;
    if (n_table_ > 0) {
      const int n = std::min(k, n_table_);
      std::copy_n(table_draft_, n, out.tokens.data());
      out.set_chain(n);
    } else {
      out.set_chain(match_.found() ? match_.copy(committed, k, out.tokens.data()) : 0);
    }
    return out.n;
  }

  void on_accept(int n_accept) override {}
  int default_k() const override { return 8; }
  bool stochastic(const GenConfig& cfg) const override { return false; }

 private:
  std::shared_ptr<const NgramIndex> table_;  // the bundle's n-gram table (null: none)
  bool use_table_ = false;                   // this generation drafts from the table
  int ngram_max_ = 3;
  int ngram_min_ = 1;
  lookup::StepMatch match_;                        // this step's match (draft_class -> propose)
  int32_t table_draft_[NgramIndex::kMaxDraft]{};  // this step's table draft, if n_table_ > 0
  int n_table_ = 0;
};

}  // namespace

std::unique_ptr<Drafter> make_ngram_drafter(std::shared_ptr<const NgramIndex> table) {
  return std::make_unique<NgramDrafter>(std::move(table));
}

}  // namespace edgespec

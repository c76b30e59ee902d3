// The bundle's n-gram table (docs/bundle-format.md, lookup; built by
// export/distill/ngram_table.py): for contexts of n_min..n_max tokens seen in the target's own
// answers, the token that most often followed. Prompt lookup drafts from it when the
// conversation has no match of its own (drafter_ngram.cpp). A draft only costs verify width:
// greedy verification keeps the output exact whatever the table proposes.
#pragma once

#include <cstdint>
#include <vector>

#include "draft_policy.h"
#include "edgespec/engine.h"

namespace edgespec {

// Key of the context toks[0..n): FNV-1a over 32-bit words, n first (mirrors ngram_keys in
// export/distill/ngram_table.py): h = offset; h = (h ^ n) * prime; h = (h ^ uint32(t)) * prime.
uint64_t ngram_key(const int32_t* toks, int n);

class NgramIndex {
 public:
  static constexpr int kMaxOrder = 4;       // longest context a table may key on
  static constexpr int kMaxDraft = 16;      // longest chain draft() returns
  static constexpr double kMinShare = 0.5;  // a continuation must have followed its context at
                                            // least this often (hits / total) to be drafted

  // Validates the table (std::invalid_argument naming the bad entry): equal lengths, keys
  // strictly ascending, next in [0, vocab), 1 <= hits <= total, 1 <= n_min <= n_max <= kMaxOrder.
  NgramIndex(NgramTable table, int vocab);

  // Drafts up to k (<= kMaxDraft) tokens after seq[0..len) into out: each draft is the entry of
  // the longest context (n_max down to n_min tokens of seq + the drafts so far) in the table;
  // stops at the first position whose entry is missing or below kMinShare. Returns the number
  // drafted; *order is the context length behind the first draft (0 when none).
  int draft(const int32_t* seq, int len, int k, int32_t* out, int* order) const;

  int n_min() const { return t_.n_min; }
  int n_max() const { return t_.n_max; }

 private:
  int find(uint64_t key) const;  // entry index, -1 = absent
  NgramTable t_;
};

// One step's table draft: a drafter's draft_class() finds it, its propose() copies it (the
// engine calls them in that order for the same sequence, as lookup::StepMatch).
class TableStep {
 public:
  // Table drafts' policy classes: kClass + the context length behind the first draft, above any
  // prompt-lookup match length that commonly occurs (draft_policy.h).
  static constexpr int kClass = kDraftClasses - 1 - NgramIndex::kMaxOrder;

  // Drafts after seq from `index` (null: none); returns the draft class, -1 when none.
  int find(const NgramIndex* index, const std::vector<int32_t>& seq) {
    int order = 0;
    n_ = index == nullptr ? 0
                          : index->draft(seq.data(), static_cast<int>(seq.size()),
                                         NgramIndex::kMaxDraft, draft_, &order);
    return n_ > 0 ? kClass + order : -1;
  }
  bool found() const { return n_ > 0; }
  void clear() { n_ = 0; }
  // Copies min(k, found) drafted tokens into out; returns the count.
  int copy(int k, int32_t* out) const {
    const int n = k < n_ ? k : n_;
    for (int i = 0; i < n; ++i) out[i] = draft_[i];
    return n;
  }

 private:
  int32_t draft_[NgramIndex::kMaxDraft] = {};  // int32 [kMaxDraft]: this step's draft
  int n_ = 0;                                  // its length (0: none)
};

}  // namespace edgespec

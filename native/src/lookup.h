// Prompt lookup, shared by the ngram drafter and the draft head's copy path: find an earlier
// occurrence of the sequence's last tokens and propose what followed it.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <vector>

namespace edgespec {
namespace lookup {

// Default draft bound of a copy (drafter "ngram", and drafter "eagle"'s copy path) when
// GenConfig.num_draft_tokens is 0. A long match copies long: with the policy choosing k per match
// length, 16 over 8 took tokens per step from 2.21 to 2.28 in a replay of 280 plain answers
// (README, "Longer copies and carried acceptance").
constexpr int kCopyDraft = 16;

// Below a match this long, a bundle's n-gram table drafts instead of the text (when it has a
// continuation): a one-token match's copy is right ~25% of the time, the table's ~42% (SmolLM2,
// fp32, 140 plain answers); from two tokens on the copy is right more often (53% vs 43%).
constexpr int kTextMatch = 2;

// An earlier occurrence of the sequence's suffix: seq[end-len+1..end] == seq[L-len..L-1].
struct Match {
  int end = -1;  // last position of the occurrence (< L - 1); -1 = none
  int len = 0;   // tokens matched (the n-gram length)
};

// The occurrence with the longest match, counted up to n_max tokens, the most recent on ties;
// none when the longest is shorter than n_min. A longer match predicts its continuation better
// (the draft policy keeps acceptance per match length).
inline Match find_longest(const int32_t* seq, int len, int n_min, int n_max) {
  Match best;
  if (len < 2) return best;
  const int32_t last = seq[len - 1];
  for (int e = len - 2; e >= 0 && best.len < n_max; --e) {
    if (seq[e] != last) continue;
    const int cap = std::min(n_max, e + 1);  // the occurrence cannot start before position 0
    int n = 1;
    while (n < cap && seq[e - n] == seq[len - 1 - n]) ++n;
    if (n > best.len) best = {e, n};
  }
  if (best.len < n_min) best = Match();
  return best;
}

// Proposes what followed seq[end]: out[i] = s[end + 1 + i] where s is seq followed by out
// itself (an overlapping copy, so a period-p repetition proposes k tokens, not p). Returns k.
inline int copy_continuation(const int32_t* seq, int len, int end, int k, int32_t* out) {
  for (int i = 0; i < k; ++i) {
    const int src = end + 1 + i;
    out[i] = src < len ? seq[src] : out[src - len];
  }
  return k;
}

// One step's match: a drafter's draft_class() finds it and its propose() copies from it, for the
// same sequence (the engine calls them in that order: Drafter::draft_class).
class StepMatch {
 public:
  // The longest match of seq's suffix (lookup disabled when n_min == 0); its length, 0 = none.
  int find(const std::vector<int32_t>& seq, int n_min, int n_max) {
    len_ = static_cast<int>(seq.size());
    match_ = n_min > 0 ? find_longest(seq.data(), len_, n_min, n_max) : Match();
    return match_.len;
  }
  bool found() const { return match_.end >= 0; }
  void clear() { match_ = Match(); }
  // Proposes k tokens of the found match's continuation into out; returns k.
  int copy(const std::vector<int32_t>& seq, int k, int32_t* out) const {
    assert(found() && len_ == static_cast<int>(seq.size()));
    return copy_continuation(seq.data(), len_, match_.end, k, out);
  }

 private:
  Match match_;
  int len_ = 0;  // length of the sequence match_ was found in
};

}  // namespace lookup
}  // namespace edgespec

// Which tokens a model's KV rows (or a drafter's feature store) hold at positions 0..n-1, so that
// a generation can keep the state of the prefix its prompt shares with what came before (a chat
// follow-up resends the whole conversation) and compute only the rest. Only for graphs whose rows
// are width-invariant (ModelSpec.reuse_prefix): kept rows then equal a fresh prefill's bit for bit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace edgespec {

class PrefixRecord {
 public:
  void reserve(int capacity) { tokens_.reserve(static_cast<size_t>(capacity)); }
  // The number of leading tokens of prompt[0..n) whose state is held, at most `limit`.
  int shared(const int32_t* prompt, int n, int limit) const {
    const int m = std::min({n, limit, size()});
    int i = 0;
    while (i < m && tokens_[i] == prompt[i]) ++i;
    return i;
  }
  // The state at positions >= n is about to change (or is gone): forget it.
  void truncate(int n) {
    if (n < size()) tokens_.resize(static_cast<size_t>(std::max(n, 0)));
  }
  // Positions size()..n-1 now hold tokens[size()..n) (the positions before are unchanged).
  void extend(const int32_t* tokens, int n) {
    for (int i = size(); i < n; ++i) tokens_.push_back(tokens[i]);
  }
  int size() const { return static_cast<int>(tokens_.size()); }

 private:
  std::vector<int32_t> tokens_;  // int32 [n]: the token at each held position
};

}  // namespace edgespec

// N-gram table lookup (ngram_table.h).
#include "ngram_table.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace edgespec {

uint64_t ngram_key(const int32_t* toks, int n) {
  constexpr uint64_t kOffset = 0xcbf29ce484222325ull;
  constexpr uint64_t kPrime = 0x100000001b3ull;
  uint64_t h = (kOffset ^ static_cast<uint64_t>(n)) * kPrime;
  for (int i = 0; i < n; ++i) h = (h ^ static_cast<uint32_t>(toks[i])) * kPrime;
  return h;
}

NgramIndex::NgramIndex(NgramTable table, int vocab) : t_(std::move(table)) {
  auto fail = [](const std::string& msg) { throw std::invalid_argument("n-gram table: " + msg); };
  const size_t e = t_.keys.size();
  if (t_.next.size() != e || t_.hits.size() != e || t_.total.size() != e) {
    fail("keys, next, hits and total differ in length (" + std::to_string(e) + ", " +
         std::to_string(t_.next.size()) + ", " + std::to_string(t_.hits.size()) + ", " +
         std::to_string(t_.total.size()) + ")");
  }
  if (t_.n_min < 1 || t_.n_max < t_.n_min || t_.n_max > kMaxOrder) {
    fail("need 1 <= n_min <= n_max <= " + std::to_string(kMaxOrder) + ", got " +
         std::to_string(t_.n_min) + ", " + std::to_string(t_.n_max));
  }
  for (size_t i = 0; i < e; ++i) {
    const std::string at = "entry " + std::to_string(i);
    if (i > 0 && t_.keys[i] <= t_.keys[i - 1]) fail(at + ": keys are not strictly ascending");
    if (t_.next[i] < 0 || t_.next[i] >= vocab) {
      fail(at + ": next token " + std::to_string(t_.next[i]) + " is outside [0, " +
           std::to_string(vocab) + ")");
    }
    if (t_.hits[i] < 1 || t_.hits[i] > t_.total[i]) {
      fail(at + ": need 1 <= hits <= total, got " + std::to_string(t_.hits[i]) + ", " +
           std::to_string(t_.total[i]));
    }
  }
}

int NgramIndex::find(uint64_t key) const {
  const auto it = std::lower_bound(t_.keys.begin(), t_.keys.end(), key);
  return it != t_.keys.end() && *it == key ? static_cast<int>(it - t_.keys.begin()) : -1;
}

int NgramIndex::draft(const int32_t* seq, int len, int k, int32_t* out, int* order) const {
  *order = 0;
  int32_t ctx[kMaxOrder + kMaxDraft];  // the last n_max committed tokens, then the drafts
  const int tail = std::min(len, t_.n_max);
  std::copy(seq + len - tail, seq + len, ctx);
  k = std::min(k, kMaxDraft);
  int n = 0;
  while (n < k) {
    const int have = tail + n;  // ctx[0..have) ends with the sequence + drafts so far
    int entry = -1, used = 0;
    for (int m = std::min(t_.n_max, have); m >= t_.n_min && entry < 0; --m) {
      entry = find(ngram_key(ctx + have - m, m));
      used = m;
    }
    if (entry < 0 || t_.hits[entry] < kMinShare * t_.total[entry]) break;
    if (n == 0) *order = used;
    out[n] = ctx[have] = t_.next[entry];
    ++n;
  }
  return n;
}

}  // namespace edgespec

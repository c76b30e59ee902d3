// Prompt lookup, shared by the ngram drafter and the draft head's copy path: find an earlier
// occurrence of the sequence's last n tokens and propose what followed it.
#pragma once

#include <algorithm>
#include <cstdint>

namespace edgespec {
namespace lookup {

// The largest end e < len - 1 with seq[e-n+1..e] == seq[len-n..len-1], or -1.
inline int find_match(const int32_t* seq, int len, int n) {
  const int32_t* suffix = seq + len - n;
  for (int e = len - 2; e >= n - 1; --e) {
    if (seq[e] == suffix[n - 1] && std::equal(suffix, suffix + n - 1, seq + e - n + 1)) return e;
  }
  return -1;
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

// Lookup with n from n_max down to n_min (n < len): proposes up to k tokens into out, returns
// how many (0 when no n-gram matched).
inline int propose(const int32_t* seq, int len, int n_max, int n_min, int k, int32_t* out) {
  for (int n = std::min(n_max, len - 1); n >= n_min; --n) {
    const int end = find_match(seq, len, n);
    if (end >= 0) return copy_continuation(seq, len, end, k, out);
  }
  return 0;
}

}  // namespace lookup
}  // namespace edgespec

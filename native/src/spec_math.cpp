// Speculative-decoding math (see spec_math.h for the formulas).
#include "spec_math.h"

#include <algorithm>
#include <cmath>

namespace edgespec {
namespace spec {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// probs[i] /= sum over the kept indices idx[0..m); the rest were zeroed by the caller.
void renormalise(float* probs, const int32_t* idx, int m) {
  double sum = 0;
  for (int j = 0; j < m; ++j) sum += probs[idx[j]];
  const float inv = static_cast<float>(1.0 / sum);
  for (int j = 0; j < m; ++j) probs[idx[j]] *= inv;
}

// Orders idx[0..m) so that its first `top` entries are the `top` largest probs, sorted
// descending (ties: lower index first). Cost O(n) + O(top log top).
void sort_top(const float* probs, int32_t* idx, int m, int top) {
  auto greater = [probs](int32_t a, int32_t b) {
    return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
  };
  if (top < m) std::nth_element(idx, idx + top, idx + m, greater);
  std::sort(idx, idx + std::min(top, m), greater);
}

// Keeps the smallest sorted prefix whose mass reaches top_p: token j (sorted) is kept iff the
// mass strictly before it is < top_p. Sorts lazily: the top 64, then 4x more while needed.
// Returns the number kept; idx[0..kept) are the kept indices.
int nucleus(float* probs, int32_t* idx, int m, float top_p) {
  int sorted = 0;
  double cum = 0;
  int j = 0;
  for (int top = std::min(m, 64);; top = std::min(m, top * 4)) {
    if (top > sorted) {
      // Re-sorting the whole prefix keeps the order total; sorted prefixes are tiny in practice.
      sort_top(probs, idx, m, top);
      sorted = top;
    }
    for (; j < sorted; ++j) {
      if (cum >= top_p) break;
      cum += probs[idx[j]];
    }
    if (j < sorted || sorted == m) break;
  }
  for (int r = j; r < m; ++r) probs[idx[r]] = 0.0f;
  return j;
}

}  // namespace

void Rng::reseed(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& w : s_) w = splitmix64(x);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

int argmax(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return best;
}

void process_logits(const float* logits, int n, const SamplingParams& sp, float* probs,
                    int32_t* idx) {
  // Softmax of logits / T, shifted by the max for stability: p_v = exp((l_v - l_max) / T) / Z.
  const float l_max = logits[argmax(logits, n)];
  const float inv_t = 1.0f / sp.temperature;
  double z = 0;
  for (int v = 0; v < n; ++v) {
    probs[v] = std::exp((logits[v] - l_max) * inv_t);
    z += probs[v];
  }
  const float inv_z = static_cast<float>(1.0 / z);
  for (int v = 0; v < n; ++v) probs[v] *= inv_z;
  const bool use_k = sp.top_k > 0 && sp.top_k < n;
  const bool use_p = sp.top_p < 1.0f;
  if (!use_k && !use_p) return;
  for (int v = 0; v < n; ++v) idx[v] = v;
  int m = n;  // candidates idx[0..m)
  if (use_k) {
    sort_top(probs, idx, n, sp.top_k);
    for (int r = sp.top_k; r < n; ++r) probs[idx[r]] = 0.0f;
    m = sp.top_k;
    renormalise(probs, idx, m);
  }
  if (use_p) {
    m = nucleus(probs, idx, m, sp.top_p);
    renormalise(probs, idx, m);
  }
}

int sample(const float* probs, int n, Rng& rng) {
  double total = 0;
  for (int v = 0; v < n; ++v) total += probs[v];
  if (!(total > 0)) return argmax(probs, n);
  // Inverse CDF: the first v with cumsum(probs)[v] > u·total.
  const double u = rng.uniform() * total;
  double cum = 0;
  int last_nonzero = 0;
  for (int v = 0; v < n; ++v) {
    if (probs[v] <= 0) continue;
    cum += probs[v];
    last_nonzero = v;
    if (cum > u) return v;
  }
  return last_nonzero;  // u·total rounded above the float cumsum
}

bool residual(const float* p, const float* q, int32_t draft, int n, float* out) {
  // r_v = max(0, p_v - q_v); with a one-hot q: r = p except r_draft = max(0, p_draft - 1) = 0.
  double mass = 0;
  for (int v = 0; v < n; ++v) {
    const float qv = q ? q[v] : (v == draft ? 1.0f : 0.0f);
    const float r = p[v] - qv;
    out[v] = r > 0 ? r : 0.0f;
    mass += out[v];
  }
  if (!(mass > 0)) return false;
  const float inv = static_cast<float>(1.0 / mass);
  for (int v = 0; v < n; ++v) out[v] *= inv;
  return true;
}

Accept accept_greedy(const float* logits, int n, const int32_t* draft, int k) {
  Accept a;
  for (int i = 0; i <= k; ++i) {
    const int best = argmax(logits + static_cast<int64_t>(i) * n, n);
    if (i == k || best != draft[i]) {
      a.next = best;
      return a;
    }
    ++a.n_accept;
  }
  return a;  // unreachable
}

Accept accept_greedy_tree(const float* logits, int n, const int32_t* draft, const int32_t* parent,
                          int k, int32_t* path) {
  Accept a;
  int row = 0;  // the verify row whose successor is being decided
  for (;;) {
    const int best = argmax(logits + static_cast<int64_t>(row) * n, n);
    int child = -1;                               // the first draft below `row` with token best
    for (int i = row; i < k && child < 0; ++i) {  // parent[i] <= i: children of row sit at >= row
      if (parent[i] == row && draft[i] == best) child = i;
    }
    if (child < 0) {
      a.next = best;
      return a;
    }
    path[a.n_accept++] = child;
    row = child + 1;
  }
}

}  // namespace spec
}  // namespace edgespec

// Speculative-decoding math: logits processing, argmax, sampling, greedy and speculative-sampling
// acceptance, residual distribution, RNG. Pure functions over caller-provided buffers: no ORT
// types, no allocation.
#pragma once

#include <cstdint>

namespace edgespec {
namespace spec {

// xoshiro256** seeded through splitmix64 (Blackman & Vigna). Deterministic for a seed.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { reseed(seed); }
  void reseed(uint64_t seed);
  uint64_t next();
  // Uniform double in [0, 1): the top 53 bits of next() times 2^-53.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_[4];  // xoshiro256** state, never all zero
};

struct SamplingParams {
  float temperature = 1.0f;  // > 0 (0 = greedy is handled by the callers with argmax)
  int top_k = 0;             // 0 = off
  float top_p = 1.0f;        // (0, 1]; 1 = off
};

// Index of the largest x[i]; ties → the lowest index (numpy.argmax).
int argmax(const float* x, int n);

// probs[v] = processed distribution of `logits`:
//   p = softmax(logits / T); keep the top_k largest (ties by lower index), renormalise;
//   keep the smallest prefix of the sorted distribution with cumulative mass >= top_p, renormalise.
// probs: float [n]; idx: int32 scratch [n]. T must be > 0.
void process_logits(const float* logits, int n, const SamplingParams& sp, float* probs,
                    int32_t* idx);

// Draws v with probability probs[v] / sum(probs). Falls back to argmax if the mass is 0.
int sample(const float* probs, int n, Rng& rng);

// out = norm(max(0, p - q)). q == nullptr means q is one-hot on `draft` (deterministic drafter).
// Returns false (out untouched beyond being zero-filled) if the residual mass is 0.
bool residual(const float* p, const float* q, int32_t draft, int n, float* out);

struct Accept {
  int n_accept = 0;   // drafted tokens accepted (longest accepted prefix)
  int32_t next = -1;  // the token committed after them (correction or bonus)
};

// Greedy verification. logits: [(k+1) × n] target rows, row i scores the token after draft i
// (row 0 follows the last committed token). Accept d_i while d_i == argmax(row i-1); next =
// argmax of the first mismatching row, or of row k (the bonus) when all k are accepted.
Accept accept_greedy(const float* logits, int n, const int32_t* draft, int k);

// Greedy verification of a draft tree. Draft i (token draft[i]) hangs below verify row
// parent[i] (0 = the last committed token, j = draft j - 1's row, so parent[i] <= i); row r
// scores the token after row r. From row 0, follow the child whose token is argmax(row r)
// (the first such child if several), until no child matches: next = argmax of that row.
// path: int32 [>= k]; path[0..n_accept) gets the accepted drafts' indices, root to leaf.
// A chain (parent[i] == i) gives accept_greedy's result.
Accept accept_greedy_tree(const float* logits, int n, const int32_t* draft, const int32_t* parent,
                          int k, int32_t* path);

// Speculative sampling (Leviathan et al. 2023; Chen et al. 2023). For i = 1..k with
// p = p_{i-1} (target row i-1) and q = q_i (the drafter's distribution for d_i):
//   accept d_i with probability min(1, p(d_i) / q(d_i))   [u ~ U[0,1): accept iff u·q(d_i) <
//   p(d_i)] on rejection: next ~ norm(max(0, p − q)), stop (p if that mass is 0)
// all accepted: next ~ p_k (bonus). The committed tokens are then distributed exactly as p.
// p_row(i) returns processed target row i (float [n]); computed lazily, rows > n_accept+1 are
// never requested. q_rows: [k × n] or nullptr for a one-hot q (deterministic drafter; then the
// acceptance probability is p(d_i) and the residual is p with d_i removed). scratch: float [n].
template <class PRow>
Accept accept_sampling(PRow&& p_row, const float* q_rows, const int32_t* draft, int k, int n,
                       Rng& rng, float* scratch) {
  Accept a;
  for (int i = 0; i < k; ++i) {
    const float* p = p_row(i);
    const float* q = q_rows ? q_rows + static_cast<int64_t>(i) * n : nullptr;
    const int32_t d = draft[i];
    const double pd = p[d];
    const double qd = q ? q[d] : 1.0;
    if (rng.uniform() * qd < pd) {  // u < p/q; p >= q always accepts, q = 0 < p accepts
      ++a.n_accept;
      continue;
    }
    a.next = residual(p, q, d, n, scratch) ? sample(scratch, n, rng) : sample(p, n, rng);
    return a;
  }
  a.next = sample(p_row(k), n, rng);
  return a;
}

}  // namespace spec
}  // namespace edgespec

// Causal attention computed one query row at a time: a row's result depends only on that row's
// query and the keys/values before it, never on how many rows share the call. So verifying k + 1
// tokens in one call gives, bit for bit, what k + 1 one-token decode steps give (ORT's
// GroupQueryAttention does not: its probs x V product runs a different MLAS kernel for one row).
// Pure functions over caller-provided buffers: no ORT types, no allocation, no threads.
#pragma once

#include <cstdint>

namespace edgespec {
namespace ops {

// e^x for x <= 0 (softmax after subtracting the max); inputs below -87 give e^-87.
// Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, then Cephes' degree-6 polynomial for
// e^r (relative error ~1e-7) times 2^n built from the exponent bits.
float exp_nonpositive(float x);

// Rotary embedding, rotate-half layout (Llama): for d < half,
//   x[d]        <- x[d] cos[pos][d] - x[d + half] sin[pos][d]
//   x[d + half] <- x[d + half] cos[pos][d] + x[d] sin[pos][d]
// x: float [>= 2 half]; cos, sin: float [max_pos, half] (row pos is read).
void rotate_half(float* x, int pos, const float* cos, const float* sin, int half);

constexpr int kMaxRows = 8;      // consecutive positions of one head per unit (attention_op)
constexpr int kMaxVectors = 24;  // query vectors per attend_rows call

// Where key j lies in k / v: row j for j < n_direct, row tail[j - n_direct] after that. A tree
// verify (attention_op.h) attends row i to the past then to its ancestors, which need not be
// the rows right before it; gathering them this way sums exactly what a chain of the same
// tokens sums, in the same order. tail == nullptr: key j is row j.
struct KeyRows {
  int n_direct = 0;
  const int32_t* tail = nullptr;  // int32 [keys - n_direct]: absolute rows
  int64_t operator()(int j) const {
    return tail == nullptr || j < n_direct ? j : tail[j - n_direct];
  }
};

// The first of vectors r..nr-1 that sees key j (n[r] > j; n nondecreasing), nr if none.
inline int first_seeing(const int32_t* n, int nr, int j, int r) {
  while (r < nr && n[r] <= j) ++r;
  return r;
}

// For query vectors r < nr, vector r seeing keys j < n[r] (n nondecreasing, n[0] >= 1):
//   s_rj = scale sum_d q_r[d] k_j[d];  m_r = max_j s_rj;  e_rj = exp(s_rj - m_r);
//   out_r[d] = (sum_j e_rj v_j[d]) / (sum_j e_rj).
// The vectors are one head's rows at consecutive positions (n[r] = n0 + r), or the heads of one
// key/value group at one position (equal n[r]), or both. Every sum runs in an order fixed by the
// vector's own key count and head_dim: the vectors share loads of k_j and v_j, never partial
// sums, so vector r's result does not depend on nr or on the other vectors.
// q: float [nr, head_dim]; n: int32 [nr]; k, v: float [rows(j) + 1 for every key j, head_dim]
// (one key/value head's cache, row-major); scores: float scratch [nr, stride], stride >=
// n[nr - 1] rounded up to a multiple of 8; out: float [nr, out_stride]. 1 <= nr <= kMaxVectors.
// Runs the AVX2 kernel (row_attention_avx2.h) where the CPU and head_dim allow, the portable
// one below otherwise: one of the two for the whole process, so results never mix.
// rows: where each key lies (KeyRows); a gathered tail needs equal n[r].
void attend_rows(const float* q, int nr, const int32_t* n, const float* k, const float* v,
                 int head_dim, float scale, float* scores, int64_t stride, float* out,
                 int64_t out_stride, const KeyRows& rows = {});

// The portable kernel (any head_dim; the compiler vectorizes it).
void attend_rows_generic(const float* q, int nr, const int32_t* n, const float* k, const float* v,
                         int head_dim, float scale, float* scores, int64_t stride, float* out,
                         int64_t out_stride, const KeyRows& rows = {});

}  // namespace ops
}  // namespace edgespec

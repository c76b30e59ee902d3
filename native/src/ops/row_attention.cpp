// See row_attention.h. The loops are written for the compiler's vectorizer: fixed 8-lane partial
// sums (lane l takes the elements with index = l mod 8) combined in one fixed tree.
#include "row_attention.h"

#include <cstring>

#include "row_attention_avx2.h"

namespace edgespec {
namespace ops {
namespace {

constexpr int kLanes = 8;  // partial sums per reduction (one AVX register of floats)

inline float exp_impl(float x) {  // see exp_nonpositive
  x = x < -87.0f ? -87.0f : x;
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln2)
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // x - n ln2, |r| <= ln2/2
  float p = 1.9875691500e-4f;  // Cephes expf: e^r ~ 1 + r + r^2 P(r)
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 0]
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return p * two_n;
}

inline float lane_sum(const float* acc) {  // acc: float [kLanes]
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

// sum_d a[d] b[d], d < n.
inline float dot(const float* a, const float* b, int n) {
  float acc[kLanes] = {};
  int d = 0;
  for (; d + kLanes <= n; d += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += a[d + l] * b[d + l];
  }
  for (; d < n; ++d) acc[d % kLanes] += a[d] * b[d];
  return lane_sum(acc);
}

// Vector r sees keys j < n[r] (n nondecreasing). Each vector's arithmetic is the same
// instructions in the same order whatever nr is: vectors share the loads of k_j / v_j, not sums.

// s[r][j] = scale q_r.k_j for j < n[r]; m[r] = max_j s[r][j].
// q: [nr, dim]; n: [nr]; k: [>= n[nr - 1], dim]; s: [nr, stride]; m: [nr].
void qk_scores(const float* q, int nr, const int32_t* n, const float* k, const KeyRows& rows,
               int dim, float scale, float* s, int64_t stride, float* m) {
  for (int r = 0; r < nr; ++r) m[r] = -3.402823466e38f;
  for (int j = 0, r0 = 0; j < n[nr - 1]; ++j) {
    const float* kj = k + rows(j) * dim;  // [dim]
    r0 = first_seeing(n, nr, j, r0);
    for (int r = r0; r < nr; ++r) {
      const float x = scale * dot(q + static_cast<int64_t>(r) * dim, kj, dim);
      s[r * stride + j] = x;
      m[r] = x > m[r] ? x : m[r];
    }
  }
}

// e[j] <- exp(e[j] - m) for j < n; returns sum_j of the new e[j].
float exp_and_sum(float* e, int n, float m) {
  for (int j = 0; j < n; ++j) e[j] = exp_impl(e[j] - m);
  float acc[kLanes] = {};
  int j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += e[j + l];
  }
  for (; j < n; ++j) acc[j % kLanes] += e[j];
  return lane_sum(acc);
}

// o_r[d] = sum_j e[r][j] v_j[d], j < n[r]: blocks of four rows of v (j < 4 floor(n[r] / 4)),
// then the rest one by one. e: [nr, stride]; v: [>= n[nr - 1], dim]; o: [nr, out_stride].
void weighted_rows(const float* e, int64_t stride, int nr, const int32_t* n, const float* v,
                   const KeyRows& rows, int dim, float* o, int64_t out_stride) {
  for (int r = 0; r < nr; ++r) std::memset(o + r * out_stride, 0, sizeof(float) * dim);
  for (int j = 0, r0 = 0; j + 4 <= n[nr - 1]; j += 4) {
    const float* v0 = v + rows(j) * dim;  // [dim] each: the rows of keys j..j+3
    const float* v1 = v + rows(j + 1) * dim;
    const float* v2 = v + rows(j + 2) * dim;
    const float* v3 = v + rows(j + 3) * dim;
    r0 = first_seeing(n, nr, j + 3, r0);  // vectors that see all four
    for (int r = r0; r < nr; ++r) {
      const float* er = e + r * stride + j;
      const float e0 = er[0], e1 = er[1], e2 = er[2], e3 = er[3];
      float* out = o + r * out_stride;  // [dim]
      for (int d = 0; d < dim; ++d) {
        out[d] = (((out[d] + e0 * v0[d]) + e1 * v1[d]) + e2 * v2[d]) + e3 * v3[d];
      }
    }
  }
  for (int r = 0; r < nr; ++r) {
    float* out = o + r * out_stride;
    for (int j = n[r] - n[r] % 4; j < n[r]; ++j) {
      const float* vj = v + rows(j) * dim;  // [dim]
      const float ej = e[r * stride + j];
      for (int d = 0; d < dim; ++d) out[d] += ej * vj[d];
    }
  }
}

}  // namespace

float exp_nonpositive(float x) { return exp_impl(x); }

void rotate_half(float* x, int pos, const float* cos, const float* sin, int half) {
  const float* c = cos + static_cast<int64_t>(pos) * half;  // [half]
  const float* s = sin + static_cast<int64_t>(pos) * half;  // [half]
  for (int d = 0; d < half; ++d) {
    const float x1 = x[d], x2 = x[d + half];
    x[d] = x1 * c[d] - x2 * s[d];
    x[d + half] = x2 * c[d] + x1 * s[d];
  }
}

void attend_rows(const float* q, int nr, const int32_t* n, const float* k, const float* v,
                 int head_dim, float scale, float* scores, int64_t stride, float* out,
                 int64_t out_stride, const KeyRows& rows) {
#if EDGESPEC_HAVE_AVX2
  static const bool avx2 = cpu_has_avx2();  // one kernel for the whole process
  if (avx2 &&
      attend_rows_avx2(q, nr, n, k, v, head_dim, scale, scores, stride, out, out_stride, rows)) {
    return;
  }
#endif
  attend_rows_generic(q, nr, n, k, v, head_dim, scale, scores, stride, out, out_stride, rows);
}

void attend_rows_generic(const float* q, int nr, const int32_t* n, const float* k, const float* v,
                         int head_dim, float scale, float* scores, int64_t stride, float* out,
                         int64_t out_stride, const KeyRows& rows) {
  float m[kMaxVectors];  // [nr]: each vector's largest score
  qk_scores(q, nr, n, k, rows, head_dim, scale, scores, stride, m);
  for (int r = 0; r < nr; ++r) m[r] = 1.0f / exp_and_sum(scores + r * stride, n[r], m[r]);
  weighted_rows(scores, stride, nr, n, v, rows, head_dim, out, out_stride);
  for (int r = 0; r < nr; ++r) {  // m[r] now holds 1 / sum_j e_j (>= 1: the max term is e^0)
    for (int d = 0; d < head_dim; ++d) out[r * out_stride + d] *= m[r];
  }
}

}  // namespace ops
}  // namespace edgespec

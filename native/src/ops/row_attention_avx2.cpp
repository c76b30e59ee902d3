// attend_rows for x86-64 CPUs with AVX2 + FMA (see row_attention.h for the contract). Built with
// function target attributes, so the library still loads on older CPUs (the caller checks the
// CPU first). Head dims of 16, 32, 64 or 128 floats (head_dim / 8 = NC registers).
//
// Fixed orders, whatever the number of rows in the call:
//   q.k_j: lane l of 8 accumulates d = l mod 8 in increasing d (FMA), then the lanes combine as
//          ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) (two hadd steps and one add);
//   sum_j e_j: lane j mod 8, combined in the same tree;
//   sum_j e_j v_j[d]: one FMA per j in increasing j.
#include "row_attention_avx2.h"

#if EDGESPEC_HAVE_AVX2

#include <immintrin.h>

#include <algorithm>

#define AVX2_FN __attribute__((target("avx2,fma")))

namespace edgespec {
namespace ops {
namespace {

constexpr int kKeyBlock = 8;  // keys per score block (one register of scores)
constexpr int kVBlock = 32;   // rows of v per pass over the query rows (8 KiB at dim 64)
constexpr float kLowest = -3.402823466e38f;

// [sum of a[0], ..., sum of a[7]]: the lane tree of the header for each of 8 registers.
AVX2_FN inline __m256 sums8(const __m256* a) {
  const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  // u0 = [a0 a1 a2 a3 (lanes 0-3) | a0 a1 a2 a3 (lanes 4-7)], u1 the same for a4..a7.
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

AVX2_FN inline float hsum(__m256 v) {  // the same tree for one register
  const __m256 z = _mm256_setzero_ps();
  __m256 a[8] = {v, z, z, z, z, z, z, z};
  return _mm256_cvtss_f32(sums8(a));
}

AVX2_FN inline float hmax(__m256 v) {  // max is exact in any order
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

AVX2_FN inline __m256 lanes_below(int n) {  // all-ones in lanes l < n, else zero
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx));
}

// e^x for x <= 0: exp_nonpositive's steps, 8 lanes (FMA where the scalar code multiplies-adds).
AVX2_FN inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  const __m256 n =
      _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic), magic);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);  // 2^n
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

// Scores of keys j0..j0+7 for one query row (keys past the last valid one repeat it).
template <int NC>
AVX2_FN inline __m256 scores8(const float* q, const float* const* kp) {
  __m256 a[kKeyBlock];
  const __m256 q0 = _mm256_loadu_ps(q);
  for (int l = 0; l < kKeyBlock; ++l) a[l] = _mm256_mul_ps(q0, _mm256_loadu_ps(kp[l]));
  for (int c = 1; c < NC; ++c) {
    const __m256 qc = _mm256_loadu_ps(q + 8 * c);
    for (int l = 0; l < kKeyBlock; ++l) {
      a[l] = _mm256_fmadd_ps(qc, _mm256_loadu_ps(kp[l] + 8 * c), a[l]);
    }
  }
  return sums8(a);
}

// s[r][j] = scale q_r.k_j (j < n[r]; the block's other lanes hold scratch), m[r] = max.
template <int NC>
AVX2_FN void qk_rows(const float* q, int nr, const int32_t* n, const float* k, const KeyRows& rows,
                     float scale, float* s, int64_t stride, float* m) {
  constexpr int dim = 8 * NC;
  const int n_max = n[nr - 1];
  __m256 mv[kMaxVectors];
  for (int r = 0; r < nr; ++r) mv[r] = _mm256_set1_ps(kLowest);
  for (int j = 0, r0 = 0; j < n_max; j += kKeyBlock) {
    const float* kp[kKeyBlock];  // rows j..j+7 of k, the last valid row repeated
    for (int l = 0; l < kKeyBlock; ++l) kp[l] = k + rows(std::min(j + l, n_max - 1)) * dim;
    r0 = first_seeing(n, nr, j, r0);
    for (int r = r0; r < nr; ++r) {
      const __m256 x = _mm256_mul_ps(scores8<NC>(q + r * dim, kp), _mm256_set1_ps(scale));
      _mm256_storeu_ps(s + r * stride + j, x);
      const __m256 valid = lanes_below(n[r] - j);
      mv[r] = _mm256_max_ps(mv[r], _mm256_blendv_ps(_mm256_set1_ps(kLowest), x, valid));
    }
  }
  for (int r = 0; r < nr; ++r) m[r] = hmax(mv[r]);
}

// e[j] <- exp(e[j] - m) for j < n, 0 for the rest of the last block; returns 1 / sum_j e[j].
AVX2_FN float exp_rows(float* e, int n, float m) {
  const __m256 mv = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  for (int j = 0; j < n; j += kKeyBlock) {
    __m256 x = exp8(_mm256_sub_ps(_mm256_loadu_ps(e + j), mv));
    x = _mm256_and_ps(x, lanes_below(n - j));
    _mm256_storeu_ps(e + j, x);
    acc = _mm256_add_ps(acc, x);
  }
  return 1.0f / hsum(acc);  // >= 1: the max term is e^0
}

// o_r = inv_r sum_j e[r][j] v_j, j < n[r]: blocks of kVBlock rows of v shared by the vectors.
template <int NC>
AVX2_FN void pv_rows(const float* e, int64_t stride, int nr, const int32_t* n, const float* v,
                     const KeyRows& rows, const float* inv, float* o, int64_t out_stride) {
  constexpr int dim = 8 * NC;
  for (int j0 = 0, r0 = 0; j0 < n[nr - 1]; j0 += kVBlock) {
    r0 = first_seeing(n, nr, j0, r0);
    for (int r = r0; r < nr; ++r) {
      float* out = o + r * out_stride;
      const float* er = e + r * stride;
      __m256 acc[NC];
      for (int c = 0; c < NC; ++c) {
        acc[c] = j0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(out + 8 * c);
      }
      const int j1 = std::min(j0 + kVBlock, n[r]);
      for (int j = j0; j < j1; ++j) {
        const __m256 ej = _mm256_set1_ps(er[j]);
        const float* vj = v + rows(j) * dim;
        for (int c = 0; c < NC; ++c)
          acc[c] = _mm256_fmadd_ps(ej, _mm256_loadu_ps(vj + 8 * c), acc[c]);
      }
      const bool last = j1 == n[r];
      const __m256 scale = _mm256_set1_ps(last ? inv[r] : 1.0f);
      for (int c = 0; c < NC; ++c) {
        _mm256_storeu_ps(out + 8 * c, last ? _mm256_mul_ps(acc[c], scale) : acc[c]);
      }
    }
  }
}

template <int NC>
AVX2_FN void attend(const float* q, int nr, const int32_t* n, const float* k, const float* v,
                    const KeyRows& rows, float scale, float* s, int64_t stride, float* o,
                    int64_t out_stride) {
  float m[kMaxVectors];  // [nr]: max score, then 1 / sum_j e_j
  qk_rows<NC>(q, nr, n, k, rows, scale, s, stride, m);
  for (int r = 0; r < nr; ++r) m[r] = exp_rows(s + r * stride, n[r], m[r]);
  pv_rows<NC>(s, stride, nr, n, v, rows, m, o, out_stride);
}

}  // namespace

bool attend_rows_avx2(const float* q, int nr, const int32_t* n, const float* k, const float* v,
                      int dim, float scale, float* s, int64_t stride, float* o, int64_t out_stride,
                      const KeyRows& rows) {
  using Kernel = void (*)(const float*, int, const int32_t*, const float*, const float*,
                          const KeyRows&, float, float*, int64_t, float*, int64_t);
  const Kernel kernel = dim == 16    ? attend<2>
                        : dim == 32  ? attend<4>
                        : dim == 64  ? attend<8>
                        : dim == 128 ? attend<16>
                                     : nullptr;
  if (kernel == nullptr) return false;
  kernel(q, nr, n, k, v, rows, scale, s, stride, o, out_stride);
  return true;
}

}  // namespace ops
}  // namespace edgespec

#endif  // EDGESPEC_HAVE_AVX2

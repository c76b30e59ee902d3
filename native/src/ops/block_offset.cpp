// The block-offset kernel (block_offset.h): a portable version and an AVX2 + FMA + F16C one,
// picked once per process.
#include "block_offset.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_features.h"

#if EDGESPEC_HAVE_AVX2
#include <immintrin.h>
#define AVX2_F16C_FN __attribute__((target("avx2,fma,f16c")))
#endif

namespace edgespec {
namespace ops {
namespace {

constexpr int64_t kChunk = 32;  // columns per accumulator set (4 × 8 lanes)

// acc [width] = sum_b s[b] * m[b, c0 .. c0 + width), in order over b, then z = y + acc.
void row_portable(const float* s, int64_t nb, const uint16_t* m, int64_t n, int64_t c0,
                  int64_t width, const float* y, float* z) {
  float acc[kChunk] = {};
  for (int64_t b = 0; b < nb; ++b) {
    const uint16_t* mb = m + b * n + c0;
    for (int64_t c = 0; c < width; ++c) acc[c] = std::fma(s[b], half_to_float(mb[c]), acc[c]);
  }
  for (int64_t c = 0; c < width; ++c) z[c0 + c] = y[c0 + c] + acc[c];
}

void cols_portable(const float* s, int64_t rows, int64_t nb, const uint16_t* m, int64_t n,
                   int64_t c0, int64_t c1, const float* y, float* z) {
  for (int64_t c = c0; c < c1; c += kChunk) {
    const int64_t width = c1 - c < kChunk ? c1 - c : kChunk;
    for (int64_t r = 0; r < rows; ++r) {
      row_portable(s + r * nb, nb, m, n, c, width, y + r * n, z + r * n);
    }
  }
}

#if EDGESPEC_HAVE_AVX2
// m [nb, c .. c + 32) as floats into buf [nb, 32] (exact).
AVX2_F16C_FN void widen_chunk(const uint16_t* m, int64_t nb, int64_t n, float* buf) {
  for (int64_t b = 0; b < nb; ++b) {
    const __m128i* mb = reinterpret_cast<const __m128i*>(m + b * n);
    for (int v = 0; v < 4; ++v)
      _mm256_storeu_ps(buf + b * kChunk + 8 * v, _mm256_cvtph_ps(_mm_loadu_si128(mb + v)));
  }
}

// z [0, 32) = y + sum_b s[b] * buf[b, :] for `R` rows at once (R = 1 or 2), sharing the loads
// of buf. Every row gets the same fma sequence over b as row_portable, whatever R.
template <int R>
AVX2_F16C_FN void chunk_rows(const float* s, int64_t nb, const float* buf, const float* y, float* z,
                             int64_t n) {
  __m256 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const float* mb = buf + b * kChunk;
    const __m256 m0 = _mm256_loadu_ps(mb), m1 = _mm256_loadu_ps(mb + 8);
    const __m256 m2 = _mm256_loadu_ps(mb + 16), m3 = _mm256_loadu_ps(mb + 24);
    for (int r = 0; r < R; ++r) {
      const __m256 sb = _mm256_set1_ps(s[r * nb + b]);
      acc[r][0] = _mm256_fmadd_ps(sb, m0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(sb, m1, acc[r][1]);
      acc[r][2] = _mm256_fmadd_ps(sb, m2, acc[r][2]);
      acc[r][3] = _mm256_fmadd_ps(sb, m3, acc[r][3]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < 4; ++v) {
      const float* yr = y + r * n + 8 * v;
      _mm256_storeu_ps(z + r * n + 8 * v, _mm256_add_ps(_mm256_loadu_ps(yr), acc[r][v]));
    }
  }
}

AVX2_F16C_FN void cols_avx2(const float* s, int64_t rows, int64_t nb, const uint16_t* m, int64_t n,
                            int64_t c0, int64_t c1, const float* y, float* z) {
  thread_local std::vector<float> buf;  // [nb, 32]: one chunk of m as floats
  if (buf.size() < static_cast<size_t>(nb * kChunk)) buf.resize(nb * kChunk);
  for (int64_t c = c0; c < c1; c += kChunk) {
    if (c1 - c < kChunk) {  // the last, partial chunk: the same per-element order, scalar
      for (int64_t r = 0; r < rows; ++r)
        row_portable(s + r * nb, nb, m, n, c, c1 - c, y + r * n, z + r * n);
      continue;
    }
    widen_chunk(m + c, nb, n, buf.data());
    int64_t r = 0;
    for (; r + 2 <= rows; r += 2)
      chunk_rows<2>(s + r * nb, nb, buf.data(), y + r * n + c, z + r * n + c, n);
    if (r < rows) chunk_rows<1>(s + r * nb, nb, buf.data(), y + r * n + c, z + r * n + c, n);
  }
}

#endif

}  // namespace

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
  float out;
  if (exp == 0x1F) {  // inf / nan
    const uint32_t bits = sign | 0x7F800000u | (mant << 13);
    std::memcpy(&out, &bits, sizeof out);
  } else if (exp == 0) {  // zero / subnormal: mant * 2^-24, exact in float
    out = std::ldexp(static_cast<float>(mant), -24);
    if (sign) out = -out;
  } else {
    const uint32_t bits = sign | ((exp + 112) << 23) | (mant << 13);
    std::memcpy(&out, &bits, sizeof out);
  }
  return out;
}

void block_sums(const float* x, int64_t rows, int64_t nb, int block_size, float* s) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      const float* xb = x + (r * nb + b) * block_size;
      float sum = 0.0f;
      for (int j = 0; j < block_size; ++j) sum += xb[j];
      s[r * nb + b] = sum;
    }
  }
}

void block_offset_cols_generic(const float* s, int64_t rows, int64_t nb, const uint16_t* m,
                               int64_t n, int64_t c0, int64_t c1, const float* y, float* z) {
  cols_portable(s, rows, nb, m, n, c0, c1, y, z);
}

void block_offset_cols(const float* s, int64_t rows, int64_t nb, const uint16_t* m, int64_t n,
                       int64_t c0, int64_t c1, const float* y, float* z) {
#if EDGESPEC_HAVE_AVX2
  static const bool avx2 = cpu_has_avx2_f16c();
  if (avx2) {
    cols_avx2(s, rows, nb, m, n, c0, c1, y, z);
    return;
  }
#endif
  cols_portable(s, rows, nb, m, n, c0, c1, y, z);
}

}  // namespace ops
}  // namespace edgespec

// AVX-512 VNNI and AVX2 versions of q4_matmul_tiles_generic (q4_matmul.h): per tile of 16
// columns, blocks in order, the 8 groups of 4 inputs of a block unpacked once and applied to up
// to kRows rows. The integer sums are exact; the float steps are the generic ones (a multiply,
// then two fmas per block).
#include "q4_matmul_simd.h"

#if EDGESPEC_HAVE_AVX2

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#define VNNI_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#define AVX2_FN __attribute__((target("avx2,fma,f16c")))

namespace edgespec {
namespace ops {
namespace {

constexpr int kRows = 8;  // rows per pass over a tile's weights

inline int32_t word(const int8_t* p) {  // 4 int8 as one int32 (for a broadcast)
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// out [R, 16] = rows r0..r0+R-1 of tile t.
template <int R>
VNNI_FN void tile_vnni(const Q4Weights& w, int64_t t, const int8_t* qx, const float* d,
                       const float* xs, int64_t r0, float* out) {
  const __m512i low = _mm512_set1_epi8(0x0F);
  __m512 acc[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < w.nb; ++b) {
    const int64_t tb = t * w.nb + b;
    const uint8_t* qb = w.q + tb * 256;  // [4, 64]
    __m512i wv[8];                       // group g: inputs 4g..4g+3 of the 16 columns
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m512i raw = _mm512_loadu_si512(qb + 64 * i);
      wv[i] = _mm512_and_si512(raw, low);
      wv[i + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
    }
    const __m512 sw = _mm512_loadu_ps(w.scale + tb * kQ4Tile);
    const __m512 mw =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.m + tb * kQ4Tile)));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int64_t rb = (r0 + r) * w.nb + b;
      const int8_t* xb = qx + rb * kQ4Block;
      __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();  // two chains
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        lo = _mm512_dpbusd_epi32(lo, wv[g], _mm512_set1_epi32(word(xb + 4 * g)));
        hi = _mm512_dpbusd_epi32(hi, wv[g + 4], _mm512_set1_epi32(word(xb + 4 * g + 16)));
      }
      const __m512i isum = _mm512_add_epi32(lo, hi);  // integer: exact in any order
      const __m512 sd = _mm512_mul_ps(sw, _mm512_set1_ps(d[rb]));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), sd, acc[r]);
      acc[r] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xs[rb]), acc[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * kQ4Tile, acc[r]);
}

// out [R, 8] = rows r0..r0+R-1 of half h (columns 8h..8h+7) of tile t.
template <int R>
AVX2_FN void half_avx2(const Q4Weights& w, int64_t t, int h, const int8_t* qx, const float* d,
                       const float* xs, int64_t r0, float* out) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < w.nb; ++b) {
    const int64_t tb = t * w.nb + b;
    const uint8_t* qb = w.q + tb * 256 + 32 * h;  // group i at qb + 64 i: 8 columns x 4 bytes
    __m256i wv[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qb + 64 * i));
      wv[i] = _mm256_and_si256(raw, low);
      wv[i + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
    }
    const __m256 sw = _mm256_loadu_ps(w.scale + tb * kQ4Tile + 8 * h);
    const __m256 mw = _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.m + tb * kQ4Tile + 8 * h)));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int64_t rb = (r0 + r) * w.nb + b;
      const int8_t* xb = qx + rb * kQ4Block;
      __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) {  // u8 x s8 pairs -> int16 (|.| <= 3810), then -> int32
        const __m256i p = _mm256_maddubs_epi16(wv[g], _mm256_set1_epi32(word(xb + 4 * g)));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, ones));
      }
      const __m256 sd = _mm256_mul_ps(sw, _mm256_set1_ps(d[rb]));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), sd, acc[r]);
      acc[r] = _mm256_fmadd_ps(mw, _mm256_set1_ps(xs[rb]), acc[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) _mm256_storeu_ps(out + r * 8, acc[r]);
}

// Copies out [R, width] into y's columns c0.. (clipped to n).
void store(const float* out, int rows, int width, int64_t c0, int64_t n, int64_t r0, float* y,
           int64_t ldy) {
  const int64_t cols = std::min<int64_t>(width, n - c0);
  for (int r = 0; r < rows; ++r) std::copy_n(out + r * width, cols, y + (r0 + r) * ldy + c0);
}

template <typename F>
void by_row_groups(int64_t rows, F&& f) {  // f(r0, R): the fewest groups of up to kRows rows,
  const int64_t groups = (rows + kRows - 1) / kRows;  // as even as they come (9 = 5 + 4)
  for (int64_t g = 0, r0 = 0; g < groups; ++g) {
    const int64_t nr = (rows - r0 + (groups - g) - 1) / (groups - g);
    f(r0, static_cast<int>(nr));
    r0 += nr;
  }
}

}  // namespace

bool cpu_has_avx512vnni() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

bool cpu_has_avx2_f16c() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

void q4_tiles_avx512vnni(const Q4Weights& w, const int8_t* qx, const float* d, const float* xs,
                         int64_t rows, int64_t t0, int64_t t1, float* y, int64_t ldy, int64_t n) {
  using Fn = void (*)(const Q4Weights&, int64_t, const int8_t*, const float*, const float*, int64_t,
                      float*);
  static constexpr Fn fns[kRows] = {tile_vnni<1>, tile_vnni<2>, tile_vnni<3>, tile_vnni<4>,
                                    tile_vnni<5>, tile_vnni<6>, tile_vnni<7>, tile_vnni<8>};
  alignas(64) float out[kRows * kQ4Tile];  // [R, 16]
  for (int64_t t = t0; t < t1; ++t) {
    by_row_groups(rows, [&](int64_t r0, int nr) {
      fns[nr - 1](w, t, qx, d, xs, r0, out);
      store(out, nr, kQ4Tile, t * kQ4Tile, n, r0, y, ldy);
    });
  }
}

void q4_tiles_avx2(const Q4Weights& w, const int8_t* qx, const float* d, const float* xs,
                   int64_t rows, int64_t t0, int64_t t1, float* y, int64_t ldy, int64_t n) {
  using Fn = void (*)(const Q4Weights&, int64_t, int, const int8_t*, const float*, const float*,
                      int64_t, float*);
  static constexpr Fn fns[kRows] = {half_avx2<1>, half_avx2<2>, half_avx2<3>, half_avx2<4>,
                                    half_avx2<5>, half_avx2<6>, half_avx2<7>, half_avx2<8>};
  alignas(32) float out[kRows * 8];  // [R, 8]
  for (int64_t t = t0; t < t1; ++t) {
    for (int h = 0; h < 2; ++h) {
      if (t * kQ4Tile + 8 * h >= n) break;
      by_row_groups(rows, [&](int64_t r0, int nr) {
        fns[nr - 1](w, t, h, qx, d, xs, r0, out);
        store(out, nr, 8, t * kQ4Tile + 8 * h, n, r0, y, ldy);
      });
    }
  }
}

}  // namespace ops
}  // namespace edgespec

#endif  // EDGESPEC_HAVE_AVX2

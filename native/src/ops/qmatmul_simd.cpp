// AVX-512 VNNI and AVX2 versions of qmatmul_tiles_generic (qmatmul.h): per tile of 16
// columns, blocks in order, the 8 groups of 4 inputs of a block unpacked (4 bits) or loaded (8
// bits) once and applied to up to kRows rows. The integer sums are exact; the float steps are the
// generic ones (a multiply, then two fmas per block).
#include "qmatmul_simd.h"

#if EDGESPEC_HAVE_AVX2

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

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
template <int Bits, int R>
VNNI_FN void tile_vnni(const QWeights& w, int64_t t, const QRows& a, int64_t r0, float* out) {
  const __m512i low = _mm512_set1_epi8(0x0F);
  __m512 acc[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < w.nb; ++b) {
    const int64_t tb = t * w.nb + b;
    const uint8_t* qb = w.q + tb * 64 * Bits;  // [Bits, 64]
    __m512i wv[8];                             // group g: inputs 4g..4g+3 of the 16 columns
#pragma GCC unroll 8
    for (int i = 0; i < Bits; ++i) {
      const __m512i raw = _mm512_loadu_si512(qb + 64 * i);
      if (Bits == 8) {
        wv[i] = raw;
      } else {
        wv[i] = _mm512_and_si512(raw, low);
        wv[i + 4] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
      }
    }
    const __m512 sw = _mm512_loadu_ps(w.scale + tb * kQTile);
    const __m512 mw =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.m + tb * kQTile)));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int64_t rb = (r0 + r) * w.nb + b;
      const int8_t* xb = a.qx + rb * kQBlock;
      __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();  // two chains
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        lo = _mm512_dpbusd_epi32(lo, wv[g], _mm512_set1_epi32(word(xb + 4 * g)));
        hi = _mm512_dpbusd_epi32(hi, wv[g + 4], _mm512_set1_epi32(word(xb + 4 * g + 16)));
      }
      const __m512i isum = _mm512_sub_epi32(_mm512_add_epi32(lo, hi),  // integer: exact
                                            _mm512_set1_epi32(w.zero_point * a.qs[rb]));
      const __m512 sd = _mm512_mul_ps(sw, _mm512_set1_ps(a.d[rb]));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), sd, acc[r]);
      acc[r] = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.xs[rb]), acc[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * kQTile, acc[r]);
}

// The int32 sums of 8 columns' levels (8 bits: 0..255) times 4 int8 inputs: maddubs would
// saturate at 255 * 127 * 2, so the nibbles go separately (|.| <= 3810) and the high one counts
// 16 times.
AVX2_FN inline __m256i dot8_avx2(__m256i raw, __m256i x, __m256i low) {
  const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(raw, low), x);
  const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(raw, 4), low), x);
  return _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_set1_epi16(1)),
                          _mm256_madd_epi16(hi, _mm256_set1_epi16(16)));
}

// out [R, 8] = rows r0..r0+R-1 of half h (columns 8h..8h+7) of tile t.
template <int Bits, int R>
AVX2_FN void half_avx2(const QWeights& w, int64_t t, int h, const QRows& a, int64_t r0,
                       float* out) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < w.nb; ++b) {
    const int64_t tb = t * w.nb + b;
    const uint8_t* qb = w.q + tb * 64 * Bits + 32 * h;  // group i at qb + 64 i: 8 columns x 4 B
    __m256i wv[8];  // 4 bits: the unpacked groups; 8 bits: loaded per row instead (registers)
#pragma GCC unroll 4
    for (int i = 0; i < 4 && Bits == 4; ++i) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qb + 64 * i));
      wv[i] = _mm256_and_si256(raw, low);
      wv[i + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
    }
    const __m256 sw = _mm256_loadu_ps(w.scale + tb * kQTile + 8 * h);
    const __m256 mw = _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.m + tb * kQTile + 8 * h)));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int64_t rb = (r0 + r) * w.nb + b;
      const int8_t* xb = a.qx + rb * kQBlock;
      __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int g = 0; g < 8; ++g) {  // u8 x s8 pairs -> int16 (|.| <= 3810), then -> int32
        const __m256i x = _mm256_set1_epi32(word(xb + 4 * g));
        if (Bits == 8) {
          const auto* raw = reinterpret_cast<const __m256i*>(qb + 64 * g);
          isum = _mm256_add_epi32(isum, dot8_avx2(_mm256_loadu_si256(raw), x, low));
        } else {
          const __m256i p = _mm256_maddubs_epi16(wv[g], x);
          isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, ones));
        }
      }
      isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(w.zero_point * a.qs[rb]));
      const __m256 sd = _mm256_mul_ps(sw, _mm256_set1_ps(a.d[rb]));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), sd, acc[r]);
      acc[r] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.xs[rb]), acc[r]);
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

// The kernels for 1..kRows rows of one bit width, indexed by rows - 1.
using VnniFn = void (*)(const QWeights&, int64_t, const QRows&, int64_t, float*);
using Avx2Fn = void (*)(const QWeights&, int64_t, int, const QRows&, int64_t, float*);
template <int Bits, size_t... R>
constexpr std::array<VnniFn, kRows> vnni_table(std::index_sequence<R...>) {
  return {tile_vnni<Bits, static_cast<int>(R) + 1>...};
}
template <int Bits, size_t... R>
constexpr std::array<Avx2Fn, kRows> avx2_table(std::index_sequence<R...>) {
  return {half_avx2<Bits, static_cast<int>(R) + 1>...};
}
constexpr auto kVnni4 = vnni_table<4>(std::make_index_sequence<kRows>());
constexpr auto kVnni8 = vnni_table<8>(std::make_index_sequence<kRows>());
constexpr auto kAvx24 = avx2_table<4>(std::make_index_sequence<kRows>());
constexpr auto kAvx28 = avx2_table<8>(std::make_index_sequence<kRows>());

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

void qmatmul_avx512vnni(const QWeights& w, const QRows& a, int64_t rows, int64_t t0, int64_t t1,
                        float* y, int64_t ldy, int64_t n) {
  const VnniFn* fns = w.bits == 8 ? kVnni8.data() : kVnni4.data();
  alignas(64) float out[kRows * kQTile];  // [R, 16]
  for (int64_t t = t0; t < t1; ++t) {
    by_row_groups(rows, [&](int64_t r0, int nr) {
      fns[nr - 1](w, t, a, r0, out);
      store(out, nr, kQTile, t * kQTile, n, r0, y, ldy);
    });
  }
}

void qmatmul_avx2(const QWeights& w, const QRows& a, int64_t rows, int64_t t0, int64_t t1, float* y,
                  int64_t ldy, int64_t n) {
  const Avx2Fn* fns = w.bits == 8 ? kAvx28.data() : kAvx24.data();
  alignas(32) float out[kRows * 8];  // [R, 8]
  for (int64_t t = t0; t < t1; ++t) {
    for (int h = 0; h < 2; ++h) {
      if (t * kQTile + 8 * h >= n) break;
      by_row_groups(rows, [&](int64_t r0, int nr) {
        fns[nr - 1](w, t, h, a, r0, out);
        store(out, nr, 8, t * kQTile + 8 * h, n, r0, y, ldy);
      });
    }
  }
}

}  // namespace ops
}  // namespace edgespec

#endif  // EDGESPEC_HAVE_AVX2

// AVX-512F and AVX2 versions of fmatmul_tiles_generic (fmatmul.h): per group of up to kRows rows
// and up to two tiles of 16 columns, the inputs in order, one weight load per tile and input
// applied to every row of the group. Each output is the generic path's fma chain.
#include "fmatmul_simd.h"

#if EDGESPEC_HAVE_AVX2

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#define F512_FN __attribute__((target("avx512f,fma")))
#define AVX2_FN __attribute__((target("avx2,fma")))

namespace edgespec {
namespace ops {
namespace {

constexpr int kRows512 = 8;   // rows per pass: 8 rows x 2 tiles = 16 zmm accumulators
constexpr int kRowsAvx2 = 6;  // 6 rows x 2 halves of a tile = 12 ymm accumulators

// out [R, T * 16] = rows x[0..R) times tiles t..t+T-1 (w: tile t's [k, 16]).
template <int R, int T>
F512_FN void block512(const float* w, int64_t k, const float* x, int64_t ldx, float* out) {
  __m512 acc[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < T; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  const int64_t tile = k * kFTile;  // floats per packed tile
  for (int64_t i = 0; i < k; ++i) {
    __m512 wv[T];
    for (int j = 0; j < T; ++j) wv[j] = _mm512_loadu_ps(w + j * tile + i * kFTile);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_set1_ps(x[r * ldx + i]);
      for (int j = 0; j < T; ++j) acc[r][j] = _mm512_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < T; ++j) _mm512_storeu_ps(out + (r * T + j) * kFTile, acc[r][j]);
  }
}

// out [R, 16] = rows x[0..R) times one tile, as two halves of 8 columns.
template <int R>
AVX2_FN void block_avx2(const float* w, int64_t k, const float* x, int64_t ldx, float* out) {
  __m256 acc[R][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t i = 0; i < k; ++i) {
    const __m256 w0 = _mm256_loadu_ps(w + i * kFTile), w1 = _mm256_loadu_ps(w + i * kFTile + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_broadcast_ss(x + r * ldx + i);
      acc[r][0] = _mm256_fmadd_ps(xv, w0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(xv, w1, acc[r][1]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(out + r * kFTile, acc[r][0]);
    _mm256_storeu_ps(out + r * kFTile + 8, acc[r][1]);
  }
}

using BlockFn = void (*)(const float*, int64_t, const float*, int64_t, float*);

template <int T, size_t... R>
constexpr std::array<BlockFn, sizeof...(R)> table512(std::index_sequence<R...>) {
  return {block512<static_cast<int>(R) + 1, T>...};
}
template <size_t... R>
constexpr std::array<BlockFn, sizeof...(R)> table_avx2(std::index_sequence<R...>) {
  return {block_avx2<static_cast<int>(R) + 1>...};
}
constexpr auto kOne512 = table512<1>(std::make_index_sequence<kRows512>());
constexpr auto kTwo512 = table512<2>(std::make_index_sequence<kRows512>());
constexpr auto kAvx2 = table_avx2(std::make_index_sequence<kRowsAvx2>());

// f(r0, R): the fewest groups of up to max_rows rows, as even as they come (9 = 5 + 4).
template <typename F>
void by_row_groups(int64_t rows, int max_rows, F&& f) {
  const int64_t groups = (rows + max_rows - 1) / max_rows;
  for (int64_t g = 0, r0 = 0; g < groups; ++g) {
    const int64_t nr = (rows - r0 + (groups - g) - 1) / (groups - g);
    f(r0, static_cast<int>(nr));
    r0 += nr;
  }
}

// y rows r0..r0+nr-1, columns c0.. of out [nr, width] (clipped to n).
void store(const float* out, int nr, int width, int64_t c0, int64_t n, int64_t r0, float* y,
           int64_t ldy) {
  const int64_t cols = std::min<int64_t>(width, n - c0);
  for (int r = 0; r < nr; ++r) std::copy_n(out + r * width, cols, y + (r0 + r) * ldy + c0);
}

}  // namespace

void fmatmul_avx512(const FWeights& w, const float* x, int64_t ldx, int64_t rows, int64_t t0,
                    int64_t t1, float* y, int64_t ldy, int64_t n) {
  alignas(64) float out[kRows512 * 2 * kFTile];  // [R, T * 16]
  for (int64_t t = t0; t < t1; t += 2) {
    const int tiles = t + 1 < t1 ? 2 : 1;
    const BlockFn* fns = tiles == 2 ? kTwo512.data() : kOne512.data();
    const float* wt = w.w + t * w.k * kFTile;
    by_row_groups(rows, kRows512, [&](int64_t r0, int nr) {
      fns[nr - 1](wt, w.k, x + r0 * ldx, ldx, out);
      store(out, nr, tiles * kFTile, t * kFTile, n, r0, y, ldy);
    });
  }
}

void fmatmul_avx2(const FWeights& w, const float* x, int64_t ldx, int64_t rows, int64_t t0,
                  int64_t t1, float* y, int64_t ldy, int64_t n) {
  alignas(32) float out[kRowsAvx2 * kFTile];  // [R, 16]
  for (int64_t t = t0; t < t1; ++t) {
    const float* wt = w.w + t * w.k * kFTile;
    by_row_groups(rows, kRowsAvx2, [&](int64_t r0, int nr) {
      kAvx2[nr - 1](wt, w.k, x + r0 * ldx, ldx, out);
      store(out, nr, kFTile, t * kFTile, n, r0, y, ldy);
    });
  }
}

}  // namespace ops
}  // namespace edgespec

#endif  // EDGESPEC_HAVE_AVX2

// A float32 linear layer whose every output is one chain of fmas in input order:
//   y[r, n] = acc_K,  acc_0 = +0,  acc_{k+1} = fma(x[r, k], W[k, n], acc_k)
// on every path (AVX-512, AVX2, portable), so a row gives the same bits whatever the number of
// rows in the call (a verify call equals one-token steps) and whatever the CPU. The weights are
// streamed once per call for all its rows: ORT's MatMul costs ~15% more at 2-6 rows than at 1
// (MLAS leaves its one-row path), while a one-token step and a short verify both stream the same
// bytes here.
//
// Packed layout (export/graph.py pack_ftiles): columns in tiles of kFTile = 16 (N padded with
// zero columns), float32 [tiles, K, 16]: element [t, k, j] = W[k, 16 t + j].
#pragma once

#include <cstdint>

namespace edgespec {
namespace ops {

constexpr int kFTile = 16;  // output columns per tile

struct FWeights {
  const float* w = nullptr;  // float32 [tiles, k, 16]
  int64_t k = 0;             // input features
  int64_t tiles = 0;         // ceil(N / kFTile)
};

// y [rows, ldy] columns of tiles [t0, t1) (clipped to n) from x [rows, ldx].
void fmatmul_tiles(const FWeights& w, const float* x, int64_t ldx, int64_t rows, int64_t t0,
                   int64_t t1, float* y, int64_t ldy, int64_t n);

// The portable kernel whatever the CPU (tests: it must give the AVX paths' bits).
void fmatmul_tiles_generic(const FWeights& w, const float* x, int64_t ldx, int64_t rows, int64_t t0,
                           int64_t t1, float* y, int64_t ldy, int64_t n);

// Which kernel fmatmul_tiles runs on this CPU: "avx512", "avx2" or "generic".
const char* fmatmul_kernel_name();

}  // namespace ops
}  // namespace edgespec

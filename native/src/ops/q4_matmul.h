// A 4-bit linear layer whose every row is computed on its own, with int8 activations:
//   W[n, k] = s[n, b] * q[n, k] + m[n, b]   (b = k / 32; q in 0..15: GGUF Q4_1's form)
//   x row r, block b:  d[r, b] = max_k |x| / 127,  qx[r, k] = round(x[r, k] / d) in [-127, 127],
//                      xs[r, b] = sum_k x[r, k] (8 partial sums over k mod 8 in k order, then
//                      ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)))
//   y[r, n] = sum_b ( float(sum_k q[n, k] qx[r, k]) * (s[n, b] * d[r, b]) + m[n, b] * xs[r, b] )
// with the sum over b accumulated in b order by two fmas per block. The integer dot product is
// exact whatever the instructions, and the float steps are the same on every path (AVX-512 VNNI,
// AVX2, portable), so a row gives the same bits whatever the number of rows in the call (a verify
// call equals one-token steps) and whatever the CPU. The weights are read once per call for all
// rows: a verify of w rows costs far less than w one-row calls (MatMulNBits re-reads them).
//
// Packed layout (export/quantize.py pack_q4_tiles): columns in tiles of kTile = 16 (N padded
// with zero columns), blocks of kBlock = 32 inputs:
//   q:     uint8 [tiles, nb, 4, 64]: byte 4j + t of group i holds q[16 tile + j, 32 b + 4 i + t] in
//          its low nibble and q[16 tile + j, 32 b + 4 (i + 4) + t] in its high nibble
//   scale: float32 [tiles, nb, 16];  m: float16 [tiles, nb, 16]
#pragma once

#include <cstdint>

namespace edgespec {
namespace ops {

constexpr int kQ4Tile = 16;   // output columns per tile
constexpr int kQ4Block = 32;  // inputs per quantization block

struct Q4Weights {
  const uint8_t* q = nullptr;    // uint8 [tiles, nb, 256]
  const float* scale = nullptr;  // float32 [tiles, nb, 16]
  const uint16_t* m = nullptr;   // float16 bits [tiles, nb, 16]
  int64_t nb = 0;                // K / kQ4Block
  int64_t tiles = 0;             // ceil(N / kQ4Tile)
};

// Per row r < rows of x [rows, nb * 32]: qx int8 [rows, nb * 32], d and xs float [rows, nb].
void q4_quantize_rows(const float* x, int64_t rows, int64_t nb, int8_t* qx, float* d, float* xs);

// y [rows, ldy] columns of tiles [t0, t1) (clipped to n), from the quantized rows.
void q4_matmul_tiles(const Q4Weights& w, const int8_t* qx, const float* d, const float* xs,
                     int64_t rows, int64_t t0, int64_t t1, float* y, int64_t ldy, int64_t n);

// The portable kernel whatever the CPU (tests: it must give the AVX paths' bits).
void q4_matmul_tiles_generic(const Q4Weights& w, const int8_t* qx, const float* d, const float* xs,
                             int64_t rows, int64_t t0, int64_t t1, float* y, int64_t ldy,
                             int64_t n);

// Which kernel q4_matmul_tiles runs on this CPU: "avx512vnni", "avx2" or "generic".
const char* q4_kernel_name();

}  // namespace ops
}  // namespace edgespec

// A 4- or 8-bit linear layer whose every row is computed on its own, with int8 activations:
//   W[n, k] = s[n, b] (q[n, k] - z) + m[n, b]   (b = k / 32; q in 0..15 or 0..255)
//   x row r, block b:  d[r, b] = max_k |x| / 127,
//                      qx[r, k] = round_half_even(x[r, k] * (127 / max_k |x|)) in [-127, 127],
//                      xs[r, b] = sum_k x[r, k] (8 partial sums over k mod 8 in k order, then
//                      ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)))
//                      qs[r, b] = sum_k qx[r, k] (int32)
//   y[r, n] = sum_b ( float(sum_k q[n, k] qx[r, k] - z qs[r, b]) * (s[n, b] * d[r, b])
//                     + m[n, b] * xs[r, b] )
// z is the layer's integer zero point (Q4_0: 8, Q8_0: 128, Q4_1: 0 with its offsets in m),
// subtracted exactly in int32 as MatMulNBits does;
// the sum over b is accumulated in b order by two fmas per block. The integer dot product is
// exact whatever the instructions, and the float steps are the same on every path (AVX-512 VNNI,
// AVX2, portable), so a row gives the same bits whatever the number of rows in the call (a verify
// call equals one-token steps) and whatever the CPU. The weights are read once per call for all
// rows: a verify of w rows costs far less than w one-row calls (MatMulNBits re-reads them).
//
// Packed layout (export/quantize.py pack_qtiles): columns in tiles of kTile = 16 (N padded
// with zero columns), blocks of kBlock = 32 inputs:
//   q:     4 bits: uint8 [tiles, nb, 4, 64]: byte 4j + t of group i holds q[16 tile + j, 32 b + 4 i
//          + t] in its low nibble and q[16 tile + j, 32 b + 4 (i + 4) + t] in its high nibble;
//          8 bits: uint8 [tiles, nb, 8, 64]: byte 4j + t of group i holds q[16 tile + j, 32 b + 4 i
//          + t]
//   scale: float32 [tiles, nb, 16];  m: float16 [tiles, nb, 16]
#pragma once

#include <cstdint>

namespace edgespec {
namespace ops {

constexpr int kQTile = 16;   // output columns per tile
constexpr int kQBlock = 32;  // inputs per quantization block

struct QWeights {
  const uint8_t* q = nullptr;                        // uint8 [tiles, nb, 64 * bits]
  const float* scale = nullptr;                      // float32 [tiles, nb, 16]
  const uint16_t* m = nullptr;                       // float16 bits [tiles, nb, 16]
  int64_t nb = 0;                                    // K / kQBlock
  int64_t tiles = 0;                                 // ceil(N / kQTile)
  int bits = 4;                                      // 4 or 8
  int zero_point = 0;                                // z: 0 .. 2^bits - 1
  int64_t block_bytes() const { return 64 * bits; }  // q bytes of one tile's block
};

// Quantized activation rows (qmatmul_quantize_rows writes them).
struct QRows {
  int8_t* qx = nullptr;   // int8 [rows, nb * 32]
  float* d = nullptr;     // [rows, nb]
  float* xs = nullptr;    // [rows, nb]
  int32_t* qs = nullptr;  // [rows, nb]
};

// Per row r < rows of x [rows, nb * 32]: qx, d, xs and qs.
void qmatmul_quantize_rows(const float* x, int64_t rows, int64_t nb, const QRows& out);

// y [rows, ldy] columns of tiles [t0, t1) (clipped to n), from the quantized rows.
void qmatmul_tiles(const QWeights& w, const QRows& a, int64_t rows, int64_t t0, int64_t t1,
                   float* y, int64_t ldy, int64_t n);

// The portable kernel whatever the CPU (tests: it must give the AVX paths' bits).
void qmatmul_tiles_generic(const QWeights& w, const QRows& a, int64_t rows, int64_t t0, int64_t t1,
                           float* y, int64_t ldy, int64_t n);

// Which kernel qmatmul_tiles runs on this CPU: "avx512vnni", "avx2" or "generic".
const char* qmatmul_kernel_name();

}  // namespace ops
}  // namespace edgespec

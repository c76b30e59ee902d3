// The per-block offset of a 4-bit linear layer whose zero points are not integers (GGUF Q4_1:
// w = d * q + m per block of block_size input features). MatMulNBits takes integer zero points
// only, so it computes the d * q part; this adds the rest in one pass:
//   z[r, c] = y[r, c] + sum_{b < nb} s[r, b] * m[b, c],   s[r, b] = sum_{j < bs} x[r, b*bs + j]
// m is float16 (Q4_1 stores m as float16, so nothing is lost), which halves the bytes a step
// reads. Each row is computed on its own in a fixed order (j, then b), so a row gives the same
// bits whatever the number of rows in the call (a verify call equals one-token steps).
#pragma once

#include <cstdint>

namespace edgespec {
namespace ops {

// s [rows, nb]: the block sums of x [rows, nb * block_size], each summed in order over j.
void block_sums(const float* x, int64_t rows, int64_t nb, int block_size, float* s);

// z [rows, n] = y [rows, n] + s [rows, nb] @ m [nb, n] on columns [c0, c1) only; m holds
// float16 bit patterns. AVX2 + FMA + F16C when the CPU has them, else portable code.
void block_offset_cols(const float* s, int64_t rows, int64_t nb, const uint16_t* m, int64_t n,
                       int64_t c0, int64_t c1, const float* y, float* z);

// block_offset_cols with the portable code whatever the CPU (for tests: it must give the same
// bits as the AVX2 path, every product being one fma in the same order).
void block_offset_cols_generic(const float* s, int64_t rows, int64_t nb, const uint16_t* m,
                               int64_t n, int64_t c0, int64_t c1, const float* y, float* z);

// The float16 bit pattern h as a float (exact).
float half_to_float(uint16_t h);

}  // namespace ops
}  // namespace edgespec

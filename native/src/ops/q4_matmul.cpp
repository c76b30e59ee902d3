#include "q4_matmul.h"

#include <algorithm>
#include <cmath>

#include "block_offset.h"
#include "q4_matmul_simd.h"

namespace edgespec {
namespace ops {

namespace {

// One block: amax and the sum (8 lanes j mod 8, then a fixed tree: the order q4_matmul.h's xs
// promises), then levels rounded half to even by the 1.5 * 2^23 trick (exact for |v| < 2^22,
// which v = x * 127 / amax is): nearbyint without a libm call.
void quantize_block(const float* xb, int8_t* qb, float* d, float* xs) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  float amax = 0, part[8] = {};
#pragma GCC unroll 32
  for (int j = 0; j < kQ4Block; ++j) {
    amax = std::max(amax, std::fabs(xb[j]));
    part[j % 8] += xb[j];
  }
  *xs = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  const float inv = amax > 0 ? 127.0f / amax : 0.0f;
#pragma GCC unroll 32
  for (int j = 0; j < kQ4Block; ++j) {
    const float v = (xb[j] * inv + kMagic) - kMagic;
    qb[j] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, v)));
  }
  *d = amax / 127.0f;
}

}  // namespace

void q4_quantize_rows(const float* x, int64_t rows, int64_t nb, int8_t* qx, float* d, float* xs) {
  for (int64_t i = 0; i < rows * nb; ++i) {
    quantize_block(x + i * kQ4Block, qx + i * kQ4Block, d + i, xs + i);
  }
}

void q4_matmul_tiles_generic(const Q4Weights& w, const int8_t* qx, const float* d, const float* xs,
                             int64_t rows, int64_t t0, int64_t t1, float* y, int64_t ldy,
                             int64_t n) {
  for (int64_t t = t0; t < t1; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      float acc[kQ4Tile] = {};
      for (int64_t b = 0; b < w.nb; ++b) {
        const uint8_t* qb = w.q + (t * w.nb + b) * 256;  // [4, 64]
        const float* sb = w.scale + (t * w.nb + b) * kQ4Tile;
        const uint16_t* mb = w.m + (t * w.nb + b) * kQ4Tile;
        const int8_t* xb = qx + (r * w.nb + b) * kQ4Block;
        const float dx = d[r * w.nb + b], sx = xs[r * w.nb + b];
        for (int j = 0; j < kQ4Tile; ++j) {
          int32_t isum = 0;
          for (int i = 0; i < 4; ++i) {
            for (int u = 0; u < 4; ++u) {
              const uint8_t byte = qb[i * 64 + 4 * j + u];
              isum += (byte & 15) * xb[4 * i + u] + (byte >> 4) * xb[4 * (i + 4) + u];
            }
          }
          const float sd = sb[j] * dx;
          acc[j] = std::fma(static_cast<float>(isum), sd, acc[j]);
          acc[j] = std::fma(half_to_float(mb[j]), sx, acc[j]);
        }
      }
      const int64_t c0 = t * kQ4Tile, c1 = std::min<int64_t>(c0 + kQ4Tile, n);
      for (int64_t c = c0; c < c1; ++c) y[r * ldy + c] = acc[c - c0];
    }
  }
}

namespace {
enum class Isa { kGeneric, kAvx2, kAvx512Vnni };
Isa detect() {
#if EDGESPEC_HAVE_AVX2
  if (cpu_has_avx512vnni()) return Isa::kAvx512Vnni;
  if (cpu_has_avx2_f16c()) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}
Isa isa() {
  static const Isa chosen = detect();  // one kernel for the whole process
  return chosen;
}
}  // namespace

void q4_matmul_tiles(const Q4Weights& w, const int8_t* qx, const float* d, const float* xs,
                     int64_t rows, int64_t t0, int64_t t1, float* y, int64_t ldy, int64_t n) {
#if EDGESPEC_HAVE_AVX2
  if (isa() == Isa::kAvx512Vnni) return q4_tiles_avx512vnni(w, qx, d, xs, rows, t0, t1, y, ldy, n);
  if (isa() == Isa::kAvx2) return q4_tiles_avx2(w, qx, d, xs, rows, t0, t1, y, ldy, n);
#endif
  q4_matmul_tiles_generic(w, qx, d, xs, rows, t0, t1, y, ldy, n);
}

const char* q4_kernel_name() {
  switch (isa()) {
    case Isa::kAvx512Vnni:
      return "avx512vnni";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "generic";
  }
}

}  // namespace ops
}  // namespace edgespec

// QMatMul (qmatmul.h): the activation quantizer, the portable kernel and the per-CPU dispatch.
#include "qmatmul.h"

#include <algorithm>
#include <cmath>

#include "block_offset.h"
#include "qmatmul_simd.h"

namespace edgespec {
namespace ops {

namespace {

// One block: amax and the sum (8 lanes j mod 8, then a fixed tree: the order qmatmul.h's xs
// promises), then levels rounded half to even by the 1.5 * 2^23 trick (exact for |v| < 2^22,
// which v = x * 127 / amax is): nearbyint without a libm call.
void quantize_block(const float* xb, int8_t* qb, float* d, float* xs, int32_t* qs) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  float amax = 0, part[8] = {};
#pragma GCC unroll 32
  for (int j = 0; j < kQBlock; ++j) {
    amax = std::max(amax, std::fabs(xb[j]));
    part[j % 8] += xb[j];
  }
  *xs = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  const float inv = amax > 0 ? 127.0f / amax : 0.0f;
  int32_t qsum = 0;
#pragma GCC unroll 32
  for (int j = 0; j < kQBlock; ++j) {
    const float v = (xb[j] * inv + kMagic) - kMagic;
    qb[j] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, v)));
    qsum += qb[j];
  }
  *qs = qsum;
  *d = amax / 127.0f;
}

}  // namespace

void qmatmul_quantize_rows(const float* x, int64_t rows, int64_t nb, const QRows& out) {
  for (int64_t i = 0; i < rows * nb; ++i) {
    quantize_block(x + i * kQBlock, out.qx + i * kQBlock, out.d + i, out.xs + i, out.qs + i);
  }
}

void qmatmul_tiles_generic(const QWeights& w, const QRows& a, int64_t rows, int64_t t0, int64_t t1,
                           float* y, int64_t ldy, int64_t n) {
  for (int64_t t = t0; t < t1; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      float acc[kQTile] = {};
      for (int64_t b = 0; b < w.nb; ++b) {
        const uint8_t* qb = w.q + (t * w.nb + b) * w.block_bytes();  // [4 or 8, 64]
        const float* sb = w.scale + (t * w.nb + b) * kQTile;
        const uint16_t* mb = w.m + (t * w.nb + b) * kQTile;
        const int64_t rb = r * w.nb + b;
        const int8_t* xb = a.qx + rb * kQBlock;
        const float dx = a.d[rb], sx = a.xs[rb];
        for (int j = 0; j < kQTile; ++j) {
          int32_t isum = 0;
          for (int g = 0; g < 8; ++g) {  // inputs 4g..4g+3 of column j
            for (int u = 0; u < 4; ++u) {
              const int level = w.bits == 8 ? qb[g * 64 + 4 * j + u]
                                : g < 4     ? qb[g * 64 + 4 * j + u] & 15
                                            : qb[(g - 4) * 64 + 4 * j + u] >> 4;
              isum += level * xb[4 * g + u];
            }
          }
          isum -= w.zero_point * a.qs[rb];
          const float sd = sb[j] * dx;
          acc[j] = std::fma(static_cast<float>(isum), sd, acc[j]);
          acc[j] = std::fma(half_to_float(mb[j]), sx, acc[j]);
        }
      }
      const int64_t c0 = t * kQTile, c1 = std::min<int64_t>(c0 + kQTile, n);
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

void qmatmul_tiles(const QWeights& w, const QRows& a, int64_t rows, int64_t t0, int64_t t1,
                   float* y, int64_t ldy, int64_t n) {
#if EDGESPEC_HAVE_AVX2
  if (isa() == Isa::kAvx512Vnni) return qmatmul_avx512vnni(w, a, rows, t0, t1, y, ldy, n);
  if (isa() == Isa::kAvx2) return qmatmul_avx2(w, a, rows, t0, t1, y, ldy, n);
#endif
  qmatmul_tiles_generic(w, a, rows, t0, t1, y, ldy, n);
}

const char* qmatmul_kernel_name() {
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

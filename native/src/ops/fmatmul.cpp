// FMatMul (fmatmul.h): the portable kernel and the per-CPU dispatch.
#include "fmatmul.h"

#include <algorithm>
#include <cmath>

#include "fmatmul_simd.h"

namespace edgespec {
namespace ops {

void fmatmul_tiles_generic(const FWeights& w, const float* x, int64_t ldx, int64_t rows, int64_t t0,
                           int64_t t1, float* y, int64_t ldy, int64_t n) {
  for (int64_t t = t0; t < t1; ++t) {
    const float* wt = w.w + t * w.k * kFTile;  // [k, 16]
    const int64_t c0 = t * kFTile, c1 = std::min<int64_t>(c0 + kFTile, n);
    for (int64_t r = 0; r < rows; ++r) {
      float acc[kFTile] = {};
      const float* xr = x + r * ldx;
      for (int64_t k = 0; k < w.k; ++k) {
        for (int j = 0; j < kFTile; ++j) acc[j] = std::fma(xr[k], wt[k * kFTile + j], acc[j]);
      }
      for (int64_t c = c0; c < c1; ++c) y[r * ldy + c] = acc[c - c0];
    }
  }
}

namespace {
enum class Isa { kGeneric, kAvx2, kAvx512 };
Isa detect() {
#if EDGESPEC_HAVE_AVX2
  if (cpu_has_avx512f()) return Isa::kAvx512;
  if (cpu_has_avx2()) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}
Isa isa() {
  static const Isa chosen = detect();  // one kernel for the whole process
  return chosen;
}
}  // namespace

void fmatmul_tiles(const FWeights& w, const float* x, int64_t ldx, int64_t rows, int64_t t0,
                   int64_t t1, float* y, int64_t ldy, int64_t n) {
#if EDGESPEC_HAVE_AVX2
  if (isa() == Isa::kAvx512) return fmatmul_avx512(w, x, ldx, rows, t0, t1, y, ldy, n);
  if (isa() == Isa::kAvx2) return fmatmul_avx2(w, x, ldx, rows, t0, t1, y, ldy, n);
#endif
  fmatmul_tiles_generic(w, x, ldx, rows, t0, t1, y, ldy, n);
}

const char* fmatmul_kernel_name() {
  switch (isa()) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "generic";
  }
}

}  // namespace ops
}  // namespace edgespec

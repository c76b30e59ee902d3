// The x86-64 kernels behind fmatmul_tiles (fmatmul.h): AVX-512F and AVX2, built with function
// target attributes so the library still loads on older CPUs (the caller checks).
#pragma once

#include <cstdint>

#include "cpu_features.h"
#include "fmatmul.h"

namespace edgespec {
namespace ops {

#if EDGESPEC_HAVE_AVX2
void fmatmul_avx512(const FWeights& w, const float* x, int64_t ldx, int64_t rows, int64_t t0,
                    int64_t t1, float* y, int64_t ldy, int64_t n);
void fmatmul_avx2(const FWeights& w, const float* x, int64_t ldx, int64_t rows, int64_t t0,
                  int64_t t1, float* y, int64_t ldy, int64_t n);
#endif

}  // namespace ops
}  // namespace edgespec

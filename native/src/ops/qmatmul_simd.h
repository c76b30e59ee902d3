// The x86-64 kernels behind qmatmul_tiles (qmatmul.h): AVX-512 VNNI and AVX2, built with
// function target attributes so the library still loads on older CPUs (the caller checks).
#pragma once

#include <cstdint>

#include "cpu_features.h"
#include "qmatmul.h"

namespace edgespec {
namespace ops {

#if EDGESPEC_HAVE_AVX2
void qmatmul_avx512vnni(const QWeights& w, const QRows& a, int64_t rows, int64_t t0, int64_t t1,
                        float* y, int64_t ldy, int64_t n);
void qmatmul_avx2(const QWeights& w, const QRows& a, int64_t rows, int64_t t0, int64_t t1, float* y,
                  int64_t ldy, int64_t n);
#endif

}  // namespace ops
}  // namespace edgespec

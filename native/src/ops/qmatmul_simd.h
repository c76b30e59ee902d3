// The x86-64 kernels behind qmatmul_tiles (qmatmul.h): AVX-512 VNNI and AVX2, built with
// function target attributes so the library still loads on older CPUs (the caller checks).
#pragma once

#include <cstdint>

#include "qmatmul.h"
#include "row_attention_avx2.h"  // EDGESPEC_HAVE_AVX2

namespace edgespec {
namespace ops {

#if EDGESPEC_HAVE_AVX2
bool cpu_has_avx512vnni();  // AVX-512 F/BW/VL/VNNI + FMA + F16C
bool cpu_has_avx2_f16c();   // AVX2 + FMA + F16C
void qmatmul_avx512vnni(const QWeights& w, const QRows& a, int64_t rows, int64_t t0, int64_t t1,
                        float* y, int64_t ldy, int64_t n);
void qmatmul_avx2(const QWeights& w, const QRows& a, int64_t rows, int64_t t0, int64_t t1, float* y,
                  int64_t ldy, int64_t n);
#endif

}  // namespace ops
}  // namespace edgespec

// The x86-64 kernels behind q4_matmul_tiles (q4_matmul.h): AVX-512 VNNI and AVX2, built with
// function target attributes so the library still loads on older CPUs (the caller checks).
#pragma once

#include <cstdint>

#include "q4_matmul.h"
#include "row_attention_avx2.h"  // EDGESPEC_HAVE_AVX2

namespace edgespec {
namespace ops {

#if EDGESPEC_HAVE_AVX2
bool cpu_has_avx512vnni();  // AVX-512 F/BW/VL/VNNI + FMA + F16C
bool cpu_has_avx2_f16c();   // AVX2 + FMA + F16C
void q4_tiles_avx512vnni(const Q4Weights& w, const int8_t* qx, const float* d, const float* xs,
                         int64_t rows, int64_t t0, int64_t t1, float* y, int64_t ldy, int64_t n);
void q4_tiles_avx2(const Q4Weights& w, const int8_t* qx, const float* d, const float* xs,
                   int64_t rows, int64_t t0, int64_t t1, float* y, int64_t ldy, int64_t n);
#endif

}  // namespace ops
}  // namespace edgespec

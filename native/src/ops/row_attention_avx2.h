// The AVX2 + FMA kernel behind attend_rows (row_attention.h), x86-64 only.
#pragma once

#include <cstdint>

#include "cpu_features.h"
#include "row_attention.h"

namespace edgespec {
namespace ops {

#if EDGESPEC_HAVE_AVX2
// attend_rows with AVX2 + FMA; false (nothing written) when dim is not 16, 32, 64 or 128.
// scores' stride must be >= n[nr - 1] rounded up to a multiple of 8.
bool attend_rows_avx2(const float* q, int nr, const int32_t* n, const float* k, const float* v,
                      int dim, float scale, float* scores, int64_t stride, float* out,
                      int64_t out_stride, const KeyRows& rows);
#endif

}  // namespace ops
}  // namespace edgespec

// Which x86-64 vector extensions this build may target and this CPU has: the one place every
// kernel's dispatch (row attention, block offset, QMatMul) asks.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EDGESPEC_HAVE_AVX2 1  // kernels built with function target attributes
#else
#define EDGESPEC_HAVE_AVX2 0
#endif

namespace edgespec {
namespace ops {

#if EDGESPEC_HAVE_AVX2
bool cpu_has_avx2();        // AVX2 + FMA
bool cpu_has_avx2_f16c();   // AVX2 + FMA + F16C
bool cpu_has_avx512f();     // AVX-512F + FMA
bool cpu_has_avx512vnni();  // AVX-512 F/BW/VL/VNNI + FMA + F16C
#endif

}  // namespace ops
}  // namespace edgespec

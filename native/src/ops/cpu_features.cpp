#include "cpu_features.h"

#if EDGESPEC_HAVE_AVX2

namespace edgespec {
namespace ops {

// __builtin_cpu_init: a no-op once libgcc's constructor ran; required before it has.
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool cpu_has_avx2_f16c() { return cpu_has_avx2() && __builtin_cpu_supports("f16c"); }

bool cpu_has_avx512f() { return cpu_has_avx2() && __builtin_cpu_supports("avx512f"); }

bool cpu_has_avx512vnni() {
  return cpu_has_avx2_f16c() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512vnni");
}

}  // namespace ops
}  // namespace edgespec

#endif  // EDGESPEC_HAVE_AVX2

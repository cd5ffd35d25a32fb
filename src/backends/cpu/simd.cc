#include "backends/cpu/simd.h"

#include <atomic>
#include <cstdlib>

namespace tandem::cpu::simd {

namespace {
int cpu_level() {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
  if (__builtin_cpu_supports("x86-64-v4")) return 2;
  if (__builtin_cpu_supports("x86-64-v3")) return 1;
#endif
  return 0;
}
// TANDEM_SIMD_LEVEL=0|1 caps the level from the start (to time the narrower versions).
int initial_cap() {
  const char* env = std::getenv("TANDEM_SIMD_LEVEL");
  return env && (env[0] == '0' || env[0] == '1') ? env[0] - '0' : 2;
}
std::atomic<int> cap{initial_cap()};
}  // namespace

int level() {
  static const int cpu = cpu_level();
  const int c = cap.load(std::memory_order_relaxed);
  return cpu < c ? cpu : c;
}

void cap_level(int max_level) {
  cap.store(max_level, std::memory_order_relaxed);
}

}  // namespace tandem::cpu::simd

#include "core/openmp_wait.h"

#include <string_view>

namespace tandem {

bool openmp_wait_is_set(const char* const* env) {
  for (; env && *env; ++env) {
    std::string_view e(*env);
    if (e.starts_with("OMP_WAIT_POLICY=") || e.starts_with("GOMP_SPINCOUNT=")) return true;
  }
  return false;
}

}  // namespace tandem

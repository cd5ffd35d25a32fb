#include "runtime/backend_choice.h"

#include "backends/cpu/cpu_backend.h"
#include "backends/ref/ref_backend.h"

namespace tandem {

std::vector<const Backend*> backends_for(const std::string& setting) {
  if (setting == "ref") return {&reference_backend()};
  return {&cpu_backend(), &reference_backend()};
}

}  // namespace tandem

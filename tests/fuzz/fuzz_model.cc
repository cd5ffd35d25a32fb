// Model bytes -> load, optimise and plan, under small size caps (build_and_plan.h). Findings: a
// crash, a sanitizer report, an allocation over libFuzzer's malloc limit, and std::bad_alloc or
// std::length_error escaping (a size computed from the model that no check bounded).
#include "build_and_plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_build_and_plan(data, size);
  return 0;
}

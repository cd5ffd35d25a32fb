// .tandem bytes -> the format reader (src/format), then the session and a plan, under small size
// caps (build_and_plan.h). Findings: a crash, a sanitizer report (a read past the bytes, a
// misaligned weight), an allocation over libFuzzer's malloc limit, and std::bad_alloc or
// std::length_error escaping (a count or size from the file that no check bounded).
//
// Most mutations break the checksum, and the reader stops there. So that the fuzzer also reaches
// the section and graph checks behind it, every input is tried twice: as given, and with its
// checksum recomputed (when it is long enough to have one).
#include <cstring>
#include <vector>

#include "build_and_plan.h"
#include "core/hash.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_build_and_plan(data, size);
  if (size >= 128) {
    std::vector<uint8_t> sealed(data, data + size);
    uint64_t sum = tandem::hash64(sealed.data() + 128, size - 128);
    std::memcpy(sealed.data() + 24, &sum, 8);
    fuzz_build_and_plan(sealed.data(), sealed.size());
  }
  return 0;
}

// libFuzzer target: the .npy reader (format/npy.h) that `tandem map` applies to files from an
// input folder. Every input must give a tensor whose bytes the file held exactly, within the cap,
// or throw tandem::Error; a tensor read must also survive a write and a second read unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "format/npy.h"
#include "tandem/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t cap = size_t{1} << 24;
  try {
    tandem::Tensor t = tandem::npy_from_bytes(data, size, "fuzz input", cap);
    if (t.nbytes() > cap || t.nbytes() > size) std::abort();
    std::string again = tandem::npy_to_bytes(t);
    tandem::Tensor u = tandem::npy_from_bytes(again.data(), again.size(), "round trip", cap);
    if (u.dtype() != t.dtype() || u.shape() != t.shape() ||
        (t.nbytes() && std::memcmp(u.raw(), t.raw(), t.nbytes()) != 0))
      std::abort();
  } catch (const tandem::Error&) {
  }
  return 0;
}

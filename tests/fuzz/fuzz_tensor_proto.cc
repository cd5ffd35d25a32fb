// Serialized TensorProto bytes -> Tensor (the .pb files of `tandem check` and `run --inputs`,
// and every initializer of a model), under a small size cap.
#include <cstddef>
#include <cstdint>

#include "onnx/tensor_proto.h"
#include "tandem/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    tandem::Tensor t = tandem::tensor_from_bytes(data, size, "fuzz input", size_t{16} << 20);
    // Touch every byte, so that a tensor larger than its buffer shows up under ASan.
    const auto* p = static_cast<const uint8_t*>(t.raw());
    uint8_t sum = 0;
    for (size_t i = 0; i < t.nbytes(); ++i) sum = static_cast<uint8_t>(sum + p[i]);
    (void)sum;
  } catch (const tandem::Error&) {
    // Refused with a message: fine. Anything else escaping is a finding.
  }
  return 0;
}

// libFuzzer target: the parent's worker-message decoder (parallel/protocol.h) and the checks of
// a decoded reply (parallel/worker_replies.h). Every input must either decode to a message whose
// fields are within the protocol's limits or throw tandem::Error: never crash, never allocate
// without bound, never read past the packet. A decoded message then goes through the checks the
// engine applies to a BUILD_FINISH, a SHAPES answer and outputs in a worker's own buffer, which
// accept it or throw ProtocolViolation (a tandem::Error).
// The first byte chooses how many (dummy) descriptors came with the packet, so the
// descriptor-count check is exercised too.
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "parallel/protocol.h"
#include "parallel/worker_replies.h"
#include "tandem/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem::parallel;
  if (size == 0) return 0;
  const size_t n_fds = data[0] % 3;
  std::vector<int> fds;
  for (size_t i = 0; i < n_fds; ++i) fds.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  try {
    Message m = decode_message(data + 1, size - 1, fds);
    // What the decoder promises.
    if (m.inputs.size() > kMaxTensorsPerMessage || m.outputs.size() > kMaxTensorsPerMessage)
      std::abort();
    for (const auto* list : {&m.inputs, &m.outputs})
      for (const TensorDesc& d : *list)
        if (d.shape.size() > kMaxRank || tensor_bytes(d.dtype, d.shape) > kMaxTensorBytes)
          std::abort();
    if (m.text.size() > size) std::abort();
    if (m.fds.size() != n_fds) std::abort();
    for (auto& [id, fd] : m.fds) ::close(fd);
    m.fds.clear();
    static const std::vector<tandem::TensorInfo> outputs = {
        {"y", tandem::DataType::kFloat32, {-1, 4}, {"batch", ""}},
        {"n", tandem::DataType::kInt64, {-1}, {"batch"}}};
    auto checked = [](auto&& check) {
      try {
        check();
      } catch (const tandem::Error&) {
      }
    };
    if (m.type == MsgType::kBuildFinish) checked([&] { build_description(m.text); });
    checked([&] { check_shapes_reply(m, outputs); });
    checked([&] { check_spilled_reply(m, outputs, size); });
  } catch (const tandem::Error&) {
    // Refused: the decoder closed the descriptors.
  }
  return 0;
}

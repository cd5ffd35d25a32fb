// libFuzzer target: the MPI request and reply header decoders (distributed/wire.h), which read
// arrays another rank sent. Every input must decode to a header within the wire's limits, whose
// tensors' sizes are computable and under the cap, or throw tandem::Error: never crash, never
// allocate without bound, never read past the array. The first byte picks the decoder and the
// rank count; the rest is read as int64 words.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "distributed/wire.h"
#include "tandem/status.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem::distributed;
  if (size == 0) return 0;
  const bool reply = data[0] & 1;
  const int ranks = 1 + (data[0] >> 1) % 4;
  std::vector<int64_t> words((size - 1) / sizeof(int64_t));
  if (!words.empty()) std::memcpy(words.data(), data + 1, words.size() * sizeof(int64_t));
  const size_t cap = size_t{1} << 24;
  try {
    if (reply) {
      Reply p = decode_reply(words, cap);
      for (const WireTensor& t : p.outputs)
        if (wire_bytes(t) > cap) std::abort();
    } else {
      Request q = decode_request(words, ranks, cap);
      if (q.command == Command::kPredict) {
        if (q.counts.size() != static_cast<size_t>(ranks)) std::abort();
        for (const WireTensor& t : q.inputs) {
          if (wire_bytes(t) > cap) std::abort();
          if (t.batched && (t.shape.empty() || t.shape[0] != q.batch)) std::abort();
          (void)wire_row_bytes(t);
        }
      }
    }
  } catch (const tandem::Error&) {
  }
  return 0;
}

// What the ranks of an MPI run tell each other, as flat int64 arrays: the request header rank 0
// broadcasts (which rank takes which items, every input's dtype and shape) and the reply each
// rank sends back (its status, compute time, every output's dtype and shape). The bytes of the
// tensors themselves travel separately (MPI_Scatterv / MPI_Bcast / MPI_Gatherv) in the sizes
// these headers give. Nothing here calls MPI, so the parsers can be fuzzed and unit-tested alone.
//
// Every array comes from another process and is parsed as untrusted: lengths, counts, dtypes,
// ranks and dims are range-checked and every size is computed with overflow checks, and a bad
// array is refused with a tandem::Error naming the field, never read past its end.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tandem/tensor.h"

namespace tandem::distributed {

inline constexpr int64_t kRequestMagic = 0x54414e444d505251;  // "TANDMPRQ"
inline constexpr int64_t kReplyMagic = 0x54414e444d505250;    // "TANDMPRP"
inline constexpr int64_t kWireVersion = 1;
// Bounds on what a header may declare; far above any real model, low enough that a corrupt
// header cannot make a rank allocate without limit before the byte checks.
inline constexpr int64_t kMaxWireTensors = 4096;
inline constexpr int64_t kMaxWireRank = 64;
inline constexpr int64_t kMaxWireRanks = 1 << 16;

enum class Command : int64_t { kPredict = 1, kExit = 2 };

struct WireTensor {
  DataType dtype = DataType::kUndefined;
  Shape shape;           // the whole tensor (for a batched input: all items of the request)
  bool batched = false;  // inputs: split along axis 0 by the request's counts
};

struct Request {
  Command command = Command::kPredict;
  int64_t id = 0;
  int64_t batch = 0;            // items in the request (batched inputs' dim 0)
  std::vector<int64_t> counts;  // items per rank, contiguous in rank order; they sum to batch
  std::vector<WireTensor> inputs;
};

struct Reply {
  int64_t id = 0;  // the request's id: rank 0 drops replies to attempts it abandoned
  bool ok = true;
  int64_t compute_us = 0;  // this rank's time inside its local predictor
  std::vector<WireTensor> outputs;
};

std::vector<int64_t> encode_request(const Request& request);
// `ranks`: the size of the communicator (counts must have one entry each). `max_tensor_bytes`
// (0: no limit) caps every input's bytes, as Context::max_tensor_bytes does.
Request decode_request(const std::vector<int64_t>& words, int ranks, size_t max_tensor_bytes);

std::vector<int64_t> encode_reply(const Reply& reply);
Reply decode_reply(const std::vector<int64_t>& words, size_t max_tensor_bytes);

// Bytes of one item (axis 0 removed) of `t`, and of the whole tensor; overflow-checked.
size_t wire_row_bytes(const WireTensor& t);
size_t wire_bytes(const WireTensor& t);

}  // namespace tandem::distributed

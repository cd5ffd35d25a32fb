// The parent <-> worker protocol: the seed's five messages (plus a shape query) over a
// Unix-domain SOCK_SEQPACKET socket, one message per packet. Every message carries the request id
// and shard index it answers, so a late or stale reply can never be taken for the current one.
// Tensor data never travels in messages: it lives in shared-memory buffers (memfd) whose file
// descriptors ride along with SCM_RIGHTS the first time a worker needs them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tandem/status.h"
#include "tandem/tensor.h"

namespace tandem::parallel {

enum class MsgType : uint32_t {
  kError = 0,        // worker -> parent: build or predict failed; text holds the message
  kPredict = 1,      // parent -> worker: run one shard
  kReply = 2,        // worker -> parent: shard done, outputs written in place
  kBuildFinish = 3,  // worker -> parent: model built; text holds its inputs/outputs as JSON
  kExit = 4,         // parent -> worker: leave the loop (worker answers kExit before exiting)
  kShapes = 5,       // parent -> worker: which output shapes do these input shapes give? The
                     // worker answers kReply with the output descriptors filled in.
};
const char* msg_type_name(MsgType t);

// The text of a kShapes reply whose outputs cannot be known before running (they depend on input
// values). The parent then sends kPredict with out_buffer 0, and the worker answers with its
// outputs in a buffer of its own whose fd rides along with the kReply.
inline constexpr const char* kDynamicOutputs = "dynamic-outputs";

// A tensor inside a shared buffer.
struct TensorDesc {
  DataType dtype = DataType::kUndefined;
  Shape shape;
  uint64_t offset = 0;  // bytes from the start of the buffer
};

struct Message {
  MsgType type = MsgType::kError;
  uint64_t request_id = 0;
  uint32_t shard = 0;
  uint64_t in_buffer = 0;  // buffer ids (0 = none); the fds are attached when `fds` says so
  uint64_t out_buffer = 0;
  std::vector<TensorDesc> inputs;
  std::vector<TensorDesc> outputs;
  double compute_ms = 0;  // kReply: the worker's own time for the shard
  std::string text;       // kError message, kBuildFinish JSON
  // kError: the failure's kind, so the caller can tell its own bad input (kInvalidArgument: an
  // index out of range, say; a server answers 400) from a fault of the worker's (kRuntime).
  ErrorCode code = ErrorCode::kRuntime;
  // Attached descriptors: (buffer id, fd). Sent with SCM_RIGHTS; received fds are owned by the
  // receiver.
  std::vector<std::pair<uint64_t, int>> fds;
};

// Limits every decoded message is held to. A tensor described in a message may not exceed
// kMaxTensorBytes (no real shard comes near it; it keeps every size computed from a descriptor
// far from overflow).
inline constexpr size_t kMaxPacket = 1 << 20;
inline constexpr size_t kMaxFds = 8;
inline constexpr uint32_t kMaxTensorsPerMessage = 4096;
inline constexpr uint32_t kMaxRank = 64;
inline constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 46;

// Bytes of a tensor of this dtype and shape; throws when the dtype has no fixed size, a dim is
// negative or the product exceeds kMaxTensorBytes (checked, never wraps).
uint64_t tensor_bytes(DataType dtype, const Shape& shape);

// The wire form of a message (descriptor ids included, the descriptors themselves not).
std::vector<uint8_t> encode_message(const Message& m);
// The pure decoder, separate from the socket so it can be fuzzed: checks every field that can be
// checked without knowing the conversation (magic, type, counts, ranks, dtypes, dims, string
// length, descriptor count, no trailing bytes) and throws tandem::Error naming the field
// otherwise. `fds` are the descriptors that came with the packet: on success they are owned by
// the returned message, on failure they are closed.
Message decode_message(const uint8_t* bytes, size_t size, std::vector<int> fds);

// Sends one message; returns false if the peer is gone (EPIPE/ECONNRESET). Other failures throw.
bool send_message(int socket_fd, const Message& m);
// Sends raw bytes as one packet (the worker's fault-injection hook sends malformed ones).
bool send_packet(int socket_fd, const std::vector<uint8_t>& bytes, const std::vector<int>& fds);
// Receives one message; std::nullopt when the peer closed the socket. Throws on a malformed
// packet (its descriptors are closed).
std::optional<Message> recv_message(int socket_fd);

}  // namespace tandem::parallel

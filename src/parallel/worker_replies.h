// What a worker process may say, checked before the parent acts on it. Workers are not trusted
// (a crashed, compromised or confused worker must never crash the parent or write into a result
// already delivered): every field of a reply is checked against what the model declares and
// what the worker owes. A reply that fails a check is a ProtocolViolation; the engine kills that
// worker, restarts it and re-runs its shard.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "parallel/protocol.h"
#include "tandem/tensor.h"

namespace tandem::parallel {

struct ProtocolViolation : Error {
  explicit ProtocolViolation(const std::string& m) : Error(ErrorCode::kRuntime, m) {}
};

// Throws ProtocolViolation with the formatted message unless `ok`.
template <typename... Args>
void require(bool ok, fmt::format_string<Args...> f, Args&&... args) {
  if (!ok) throw ProtocolViolation(fmt::format(f, std::forward<Args>(args)...));
}

// What a BUILD_FINISH says the worker built, without what legitimately differs between workers
// (the pid): every worker, a restarted one too, must say exactly what the first one said.
// Throws ProtocolViolation when the text is not such a description.
nlohmann::json build_description(const std::string& text);
// The inputs or outputs of a description: a known dtype with a fixed element size, dims of at
// least -1 (symbolic), a name per dim. Throws ProtocolViolation naming the field otherwise.
std::vector<TensorInfo> tensor_infos(const nlohmann::json& list, const char* what);

// A SHAPES answer: one descriptor per model output, of the declared dtype, rank and fixed dims,
// or the dynamic-outputs marker with none. Sizes were bounded by the decoder.
void check_shapes_reply(const Message& m, const std::vector<TensorInfo>& outputs);
// Outputs a worker returned in a buffer of its own (`buffer_bytes` long): one descriptor per
// model output, of the declared dtype, each inside the buffer (checked without overflow).
void check_spilled_reply(const Message& m, const std::vector<TensorInfo>& outputs,
                         uint64_t buffer_bytes);

}  // namespace tandem::parallel

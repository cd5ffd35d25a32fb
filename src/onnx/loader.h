// Reads an .onnx file into Tandem's Graph: initializers (inline or external) and Constant nodes
// become constant values, the declared inputs minus initializers become the graph's inputs.
#pragma once

#include <memory>
#include <string>

#include "ir/ir.h"

namespace tandem {

// Default-domain opsets Tandem accepts.
constexpr int64_t kMinOpset = 1;
constexpr int64_t kMaxOpset = 18;

// Throws tandem::Error: kNotFound (no file), kInvalidModel (malformed, truncated, dangling
// names), kUnsupported (opset out of range, sparse initializers, string tensors...).
// Every tensor the file declares is checked against `limits` before it is allocated; external
// data must lie inside the model's folder.
std::unique_ptr<Graph> load_onnx_model(const std::string& path, const SizeLimits& limits = {});
// The same from serialized ModelProto bytes; external data is refused (there is no folder).
std::unique_ptr<Graph> load_onnx_model_from_bytes(const void* data, size_t size,
                                                  const SizeLimits& limits = {});

}  // namespace tandem

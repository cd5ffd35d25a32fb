// Reads an .onnx file into Tandem's Graph: initializers (inline or external) and Constant nodes
// become constant values, the declared inputs minus initializers become the graph's inputs.
#pragma once

#include <memory>
#include <string>

#include "graph/ir.h"

namespace tandem {

// Default-domain opsets Tandem accepts.
constexpr int64_t kMinOpset = 1;
constexpr int64_t kMaxOpset = 18;

// Throws tandem::Error: kNotFound (no file), kInvalidModel (malformed, truncated, dangling
// names), kUnsupported (opset out of range, sparse initializers, string tensors...).
std::unique_ptr<Graph> load_onnx_model(const std::string& path);

}  // namespace tandem

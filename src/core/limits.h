// Size caps applied to what a model declares or makes the engine allocate (see
// Context::max_tensor_bytes / max_model_bytes for the public knobs and their defaults).
#pragma once

#include <cstddef>

#include "tandem/context.h"

namespace tandem {

struct SizeLimits {
  size_t max_tensor_bytes = Context{}.max_tensor_bytes;  // 0: no limit
  size_t max_model_bytes = Context{}.max_model_bytes;    // 0: no limit

  static SizeLimits from(const Context& ctx) { return {ctx.max_tensor_bytes, ctx.max_model_bytes}; }
};

// Build-time constant folding computes values nobody asked for yet, at load time (`tandem info`
// folds too). A node whose output is larger than its inputs (ConstantOfShape, Expand, Tile,
// Range...) folds only when its output is at most this size and the graph's total growth from
// such folds stays within kMaxFoldGrowthBytes; otherwise it stays a node and runs at run time,
// where max_tensor_bytes applies. Folds that do not grow the data (Transpose, Reshape, Cast to a
// narrower type of a weight) are only held to max_tensor_bytes.
constexpr size_t kMaxFoldTensorBytes = size_t{64} << 20;   // 64 MiB
constexpr size_t kMaxFoldGrowthBytes = size_t{256} << 20;  // 256 MiB

// Running budget of one folding sweep.
struct FoldBudget {
  size_t max_tensor_bytes = 0;  // 0: no limit
  size_t growth_left = kMaxFoldGrowthBytes;
  // Whether a node with inputs of `in_bytes` and outputs of `out_bytes` may fold; charges the
  // budget when it may.
  bool admit(size_t in_bytes, size_t out_bytes) {
    if (max_tensor_bytes && out_bytes > max_tensor_bytes) return false;
    if (out_bytes <= in_bytes) return true;
    size_t growth = out_bytes - in_bytes;
    if (out_bytes > kMaxFoldTensorBytes || growth > growth_left) return false;
    growth_left -= growth;
    return true;
  }
};

}  // namespace tandem

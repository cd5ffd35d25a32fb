// Slice's parameters as the op defines them, read once for the schema and the kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "ir/ir.h"

namespace tandem {

struct SliceParams {
  std::vector<int64_t> starts, ends, axes, steps;
};

// Reads Slice's starts, ends, axes and steps: attributes before opset 10, inputs 1 to 4 from
// then on (`input(i)` gives input i's values, empty for an absent optional one). Axes default to
// 0..n-1 and steps to 1; the four must have one length (throws tandem::Error naming the node).
SliceParams read_slice_params(const Node& node,
                              const std::function<std::vector<int64_t>(size_t)>& input);

}  // namespace tandem

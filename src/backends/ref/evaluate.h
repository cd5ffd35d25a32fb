// Runs one node on the reference backend with given inputs: used to fold constants at build and
// plan time, so a folded value is exactly what the oracle would compute.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "ir/ir.h"
#include "ops/schema.h"

namespace tandem {

std::vector<Tensor> evaluate_on_reference(const Node& node, std::span<const Tensor* const> inputs);

// The same for constant folding: nothing (the node is left to run time) when its outputs would
// not fit `budget` (see FoldBudget in core/limits.h).
std::optional<std::vector<Tensor>> fold_on_reference(const Node& node,
                                                     std::span<const Tensor* const> inputs,
                                                     FoldBudget& budget);

// Throws when any of `types` (the outputs of `node`) exceeds `max_tensor_bytes` (0: no limit).
void check_output_sizes(const Node& node, std::span<const TensorType> types,
                        size_t max_tensor_bytes);

}  // namespace tandem

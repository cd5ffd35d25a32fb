// Runs one node on the reference backend with given inputs: used to fold constants at build and
// plan time, so a folded value is exactly what the oracle would compute.
#pragma once

#include <span>
#include <vector>

#include "graph/ir.h"

namespace tandem {

std::vector<Tensor> evaluate_on_reference(const Node& node, std::span<const Tensor* const> inputs);

}  // namespace tandem

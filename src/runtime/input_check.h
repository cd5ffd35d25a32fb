// Matching a caller's tensors to a model's inputs and checking them, so every entry point (Model,
// the parallel runner) refuses bad input with the same clear messages before any kernel runs.
#pragma once

#include <vector>

#include "tandem/tensor.h"

namespace tandem {

// By name when every tensor has one, otherwise by position. Throws kInvalidArgument for an
// unknown or repeated name, too many tensors, or a missing input (naming the model's inputs).
std::vector<const Tensor*> match_inputs(const std::vector<TensorInfo>& declared,
                                        const std::vector<Tensor>& inputs);

// dtype, rank and every static dimension (from `first_dim` on; 1 skips the batch axis), and no
// zero-sized dimension unless the model declares that dimension 0. `rank_known` is false when
// the model does not declare the input's shape at all.
void check_input(const TensorInfo& declared, bool rank_known, const Tensor& t,
                 size_t first_dim = 0);

}  // namespace tandem

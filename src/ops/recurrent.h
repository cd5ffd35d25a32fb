// The activations of the recurrent family (RNN, GRU, LSTM), shared by the reference kernels and
// the CPU backend's kernels: their parsing from the node's attributes and their scalar formulas.
#pragma once

#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem {

struct RecurrentActivation {
  std::string name;  // lower case: sigmoid, tanh, relu, affine, leakyrelu, ...
  double alpha = 0, beta = 0;
  double operator()(double x) const;
};

// The activations f, g[, h] of each direction (dirs * dflt.size() of them, direction-major),
// with alpha/beta consumed in order by the functions that take them (defaults: those of the
// same-named ONNX operators). `dflt` are the op's default names, one direction's worth.
std::vector<RecurrentActivation> read_recurrent_activations(const Node& node, int64_t dirs,
                                                            std::vector<std::string> dflt);

}  // namespace tandem

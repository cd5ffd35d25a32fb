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

// The attributes of RNN, GRU and LSTM, parsed once from the node and handed to the schema and to
// every kernel (reference and CPU).
struct RecurrentAttrs {
  int64_t layout = 0;                // 0: X is [seq, batch, input]; 1: [batch, seq, input]
  int64_t dirs = 1;                  // 2 for direction = bidirectional
  bool reverse_only = false;         // direction = reverse
  int64_t hidden_size = -1;          // as written; -1 when absent (R's shape gives it)
  float clip = 0;                    // 0: no clipping
  bool linear_before_reset = false;  // GRU
  bool input_forget = false;         // LSTM
  std::vector<RecurrentActivation> activations;  // direction-major: f, g[, h] per direction

  // Checks layout, direction and the activations; throws naming the node.
  static RecurrentAttrs parse(const Node& node);
};

// The activations f, g[, h] of each direction (dirs * dflt.size() of them, direction-major),
// with alpha/beta consumed in order by the functions that take them (defaults: those of the
// same-named ONNX operators). `dflt` are the op's default names, one direction's worth.
std::vector<RecurrentActivation> read_recurrent_activations(const Node& node, int64_t dirs,
                                                            std::vector<std::string> dflt);

}  // namespace tandem

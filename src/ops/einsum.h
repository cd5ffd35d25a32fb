// The text of an Einsum equation, shared by the schema (shapes) and the kernels.
#pragma once

#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem {

struct EinsumEquation {
  std::string text;                // the equation without spaces, for messages
  std::vector<std::string> terms;  // one per operand, left of "->"
  bool has_output = false;         // an explicit "->" output
  std::string output;              // right of "->"
};

// Reads the node's `equation` attribute and checks it has one term per input.
EinsumEquation parse_einsum_equation(const Node& node, size_t num_inputs);

// a..z -> 0..25, A..Z -> 26..51, anything else -> -1.
int einsum_letter(char c);

}  // namespace tandem

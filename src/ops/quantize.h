// The attribute of QuantizeLinear and DequantizeLinear, parsed once from the node and handed to
// the reference kernels (the schemas do not need it).
#pragma once

#include <cstdint>

#include "ir/ir.h"

namespace tandem {

struct QuantizeAttrs {
  int64_t axis = 1;  // the per-axis scale's axis (an attribute from opset 13; 1 before)

  static QuantizeAttrs parse(const Node& node) {
    QuantizeAttrs a;
    if (node.opset >= 13) a.axis = node.attr_int_or("axis", 1);
    return a;
  }
};

}  // namespace tandem

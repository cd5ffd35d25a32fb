// The attributes of Dropout, parsed once from the node and handed to the reference kernel (from
// opset 12 ratio and training_mode are inputs instead).
#pragma once

#include "ir/ir.h"

namespace tandem {

struct DropoutAttrs {
  float ratio = 0.5f;     // before opset 12
  bool training = false;  // before opset 7: is_test = 0

  static DropoutAttrs parse(const Node& node) {
    DropoutAttrs a;
    a.ratio = node.attr_float_or("ratio", 0.5f);
    a.training = node.opset < 7 && node.attr_int_or("is_test", 0) == 0;
    return a;
  }
};

}  // namespace tandem

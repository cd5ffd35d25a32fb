// The attributes of the softmax family (Softmax, LogSoftmax, Hardmax), parsed once from the node
// and handed to the schema and to every kernel, so the opset-dependent axis rule lives here only.
#pragma once

#include <cstdint>

#include "ir/ir.h"

namespace tandem {

// The input seen as [outer, n, inner]: the op runs over each of the outer*inner rows of length n
// (stride inner).
struct SoftmaxRows {
  int64_t outer = 1, n = 1, inner = 1;
  int64_t axis = 0;  // normalised; 0 for a scalar
};

struct SoftmaxAttrs {
  int64_t axis = -1;  // as written in the node; may be negative
  // Opset < 13: the input is coerced to 2-D at `axis` (default 1), so a row spans every dim from
  // the axis on. Opset >= 13: a row is the single dim at `axis` (default -1).
  bool coerce_to_2d = false;

  static SoftmaxAttrs parse(const Node& node);

  // The rows of an input of shape `shape`; throws naming `node` when the axis is out of range
  // (a scalar counts as rank 1).
  SoftmaxRows rows(const Shape& shape, const Node& node) const;
};

}  // namespace tandem

// Legacy (opset < 7) operand layouts that Tandem computes by viewing an operand under another
// shape, so the regular numpy-broadcasting schema and kernel do the rest. Shared by the schemas
// (ops/) and the kernels (backends/) so that both see the same shapes.
#pragma once

#include "ir/ir.h"

namespace tandem {

// Binary ops before opset 7 with broadcast = 1: B's dims line up with A's starting at `axis`
// (default rank(A) - rank(B), i.e. suffix alignment, which is numpy's). Returns B's shape padded
// with ones on both sides to rank(A), so that numpy broadcasting computes the legacy result.
// Returns `b` unchanged for every other node (opset >= 7, broadcast = 0, or no `axis`).
// Throws kInvalidModel when B does not fit inside A at `axis`.
Shape legacy_broadcast_shape(const Node& node, const Shape& a, const Shape& b);

// PRelu before opset 7: a 1-D slope of X.shape[1] (> 1) values is per channel (axis 1), not
// aligned with X's last dim. Returns the slope's shape as [C, 1, ..., 1] (rank(X) - 1 dims) in
// that case, else `slope` unchanged.
Shape legacy_prelu_slope_shape(const Node& node, const Shape& x, const Shape& slope);

}  // namespace tandem

// The attributes of the shape family that its schemas and reference kernels both need (Shape's
// start/end, EyeLike's k and dtype, Constant's and ConstantOfShape's value), parsed once from the
// node. Reshape/Flatten/Squeeze/Unsqueeze's attributes only shape the output (ops/shape.cc).
#pragma once

#include <cstdint>
#include <optional>
#include <utility>

#include "ir/ir.h"

namespace tandem {

struct ShapeOpAttrs {
  int64_t start = 0;              // Shape from opset 15, as written
  std::optional<int64_t> end;     // Shape from opset 15; absent: the rank
  int64_t k = 0;                  // EyeLike: the diagonal
  std::optional<DataType> dtype;  // EyeLike; absent: the input's
  // Constant: its value, from whichever value* attribute it has; ConstantOfShape: the one-element
  // fill value (undefined when absent: float32 0).
  Tensor value;

  // Throws naming the node when a Constant has no value it can read, or ConstantOfShape's value
  // is not one element.
  static ShapeOpAttrs parse(const Node& node);

  // Shape's dims [first, second) of an input of `rank`, clamped into range.
  std::pair<int64_t, int64_t> shape_range(int64_t rank) const;
};

}  // namespace tandem

// The attributes of the pool family (MaxPool, AveragePool, LpPool, the Global* pools and
// MaxUnpool), parsed once from the node and handed to the schema and to every kernel, so the
// window and padding rules live here only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem {

// One spatial axis of a windowed pool: input position o * stride - pad_begin + k * dilation is
// tap k of output position o.
struct PoolAxis {
  int64_t kernel = 1, stride = 1, dilation = 1, pad_begin = 0, pad_end = 0;
  int64_t extent() const { return (kernel - 1) * dilation + 1; }  // the window's span
};

struct PoolAttrs {
  std::vector<int64_t> kernel_shape;
  // As written in the node; empty means the default (1 per axis for strides and dilations, 0 for
  // pads, which hold every axis's begin and then every axis's end).
  std::vector<int64_t> strides, dilations, pads;
  std::string auto_pad = "NOTSET";  // NOTSET, SAME_UPPER, SAME_LOWER or VALID
  bool ceil_mode = false;
  bool count_include_pad = false;     // AveragePool
  bool column_major_indices = false;  // MaxPool storage_order = 1
  int64_t p = 2;                      // LpPool, GlobalLpPool

  // Reads the node's attributes and checks those that do not depend on the input's rank.
  static PoolAttrs parse(const Node& node);

  // Whether the window attributes give exactly `n` spatial axes, all kernel, stride and dilation
  // values >= 1 and pads >= 0.
  bool fits(size_t n) const;
  // Throws naming `node` unless fits(x.size() - 2), saying which attribute is off.
  void check(const Shape& x, const Node& node) const;

  // The output shape of a windowed pool on input `x` [N, C, spatial...]; throws naming `node`
  // when the attributes do not fit or a window is larger than its padded axis.
  Shape output_shape(const Shape& x, const Node& node) const;

  // MaxUnpool's output shape when output_shape is not given: per spatial axis
  // (in - 1) * stride + kernel - pad_begin - pad_end. Throws naming `node` when the attributes do
  // not fit `x`.
  Shape unpooled_shape(const Shape& x, const Node& node) const;

  // Spatial axis i of n for an input of size `in` pooled to size `out`: SAME_* padding is derived
  // from the sizes (the larger half at the end for SAME_UPPER), VALID has none. Requires fits(n).
  PoolAxis axis(size_t i, size_t n, int64_t in, int64_t out) const;
};

}  // namespace tandem

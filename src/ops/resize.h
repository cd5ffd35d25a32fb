// The geometry of Resize / Upsample, shared by every backend: per axis and per output position,
// the input positions read and their weights ("taps"), following the ONNX coordinate transforms
// and interpolation kernels (nearest, linear, cubic, antialias, exclude_outside,
// tf_crop_and_resize). Interpolation is separable: an output element is the weighted sum over
// the cartesian product of its per-axis taps; nearest has one tap of weight 1 per axis.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem {

struct ResizeTap {
  int64_t index;
  double weight;
};

// Per output position along one axis: its taps, or `outside` when tf_crop_and_resize maps it
// outside the input (the output is then extrapolation_value).
struct ResizeAxisTaps {
  std::vector<std::vector<ResizeTap>> taps;
  std::vector<char> outside;
};

struct ResizeAttrs {
  std::string mode = "nearest";      // nearest | linear | cubic
  std::string coord = "asymmetric";  // coordinate_transformation_mode
  std::string nearest = "legacy";    // nearest_mode; legacy = Upsample / Resize-10
  double cubic_a = -0.75;
  bool exclude_outside = false;
  bool antialias = false;
  double extrapolation = 0.0;
};

struct ResizeGeometry {
  ResizeAttrs attrs;
  std::vector<ResizeAxisTaps> axes;  // one per axis of X
  bool any_outside = false;          // some output is extrapolation_value
};

ResizeAttrs read_resize_attrs(const Node& node);

// The values of a scales or roi input (float32 or float64) as doubles; throws naming the node
// for another dtype.
std::vector<double> read_resize_floats(const Tensor& t, const Node& node);

// The taps of every axis for a Resize/Upsample node with these inputs (X, then roi / scales /
// sizes as the opset places them) and output shape `y`. Throws tandem::Error naming the node on
// inconsistent scales, sizes or roi.
ResizeGeometry resize_geometry(const Node& node, std::span<const Tensor* const> inputs,
                               const Shape& y);

}  // namespace tandem

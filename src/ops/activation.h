// The attributes of the elementwise activations that have any (LeakyRelu, ThresholdedRelu,
// HardSigmoid, Elu, Selu, Celu, Shrink, Gelu and the fused GeGLU), parsed once from the node and
// handed to every kernel (reference and CPU), so each op's defaults are written here only.
#pragma once

#include <limits>

#include "ir/ir.h"

namespace tandem {

struct ActivationAttrs {
  // By op, with ONNX's defaults: LeakyRelu alpha 0.01; ThresholdedRelu alpha 1; HardSigmoid
  // alpha 0.2, beta 0.5; Elu alpha 1; Selu alpha 1.6732632, gamma 1.0507010; Celu alpha 1;
  // Shrink lambd (as alpha) 0.5, bias (as beta) 0. Ops without attributes leave them 0.
  float alpha = 0, beta = 0, gamma = 0;
  bool tanh_approximation = false;  // Gelu, GeGLU: approximate = "tanh" (else "none")
  // Clip before opset 11: the min and max attributes (+-infinity when absent). From opset 11 the
  // bounds are inputs and these stay unset.
  bool clip_bounds_are_attributes = false;
  float clip_min = 0, clip_max = 0;

  // Throws naming the node on an approximate value other than "none" or "tanh".
  static ActivationAttrs parse(const Node& node);
};

}  // namespace tandem

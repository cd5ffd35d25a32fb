// The activation a fused op (FusedConv) applies to its result, read from the node's
// `activation` (string) and `activation_params` (floats) attributes, shared by the schema, the
// reference kernel and the CPU kernel.
//
//   ""/absent    none             Sigmoid      1 / (1 + exp(-x))
//   Relu         max(x, 0)        HardSigmoid  max(0, min(1, alpha * x + beta)), [alpha, beta]
//   LeakyRelu    x < 0 ? alpha x  (defaults 0.2, 0.5)
//                : x, [alpha]     HardSwish    x * max(0, min(1, x / 6 + 1 / 2))
//                (default 0.01)   Tanh         tanh(x)
//   Clip         min(max(x, lo),  SiLU         x * sigmoid(x)
//                hi), [lo, hi]
//                (default +-inf)
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "ir/ir.h"

namespace tandem {

enum class ActivationKind {
  kNone,
  kRelu,
  kLeakyRelu,
  kClip,
  kSigmoid,
  kHardSigmoid,
  kHardSwish,
  kTanh,
  kSiLU
};

struct FusedActivation {
  ActivationKind kind = ActivationKind::kNone;
  float alpha = 0, beta = 0;  // LeakyRelu: alpha; Clip: lo, hi; HardSigmoid: alpha, beta
};

// A Clip node's bounds where they are known before it runs: its attributes before opset 11,
// float32 scalar constant inputs from then on, +-inf where one is absent. False where a bound is
// an input that is not a float32 scalar constant, or is NaN.
bool static_clip_bounds(const Node& node, float& lo, float& hi);

// Reads and checks a node's `activation` and `activation_params`; throws tandem::Error naming
// the node on an unknown activation or a wrong number of parameters.
FusedActivation read_fused_activation(const Node& node);

// The activation's name as the `activation` attribute spells it ("" for none).
const char* activation_name(ActivationKind kind);

// Sets the `activation` and `activation_params` attributes of `node` to `act`.
void set_fused_activation(Node& node, const FusedActivation& act);

template <typename T>
T apply_activation(const FusedActivation& a, T x) {
  auto sigmoid = [](T v) {  // written so that exp never overflows
    if (v >= 0) return T(1) / (T(1) + std::exp(-v));
    const T e = std::exp(v);
    return e / (T(1) + e);
  };
  switch (a.kind) {
    case ActivationKind::kNone:
      return x;
    case ActivationKind::kRelu:
      return x > T(0) ? x : T(0);
    case ActivationKind::kLeakyRelu:
      return x < 0 ? T(a.alpha) * x : x;
    case ActivationKind::kClip:
      return std::min(std::max(x, T(a.alpha)), T(a.beta));
    case ActivationKind::kSigmoid:
      return sigmoid(x);
    case ActivationKind::kHardSigmoid:
      return std::max(T(0), std::min(T(1), T(a.alpha) * x + T(a.beta)));
    case ActivationKind::kHardSwish:
      return x * std::max(T(0), std::min(T(1), x / T(6) + T(0.5)));
    case ActivationKind::kTanh:
      return std::tanh(x);
    case ActivationKind::kSiLU:
      return x * sigmoid(x);
  }
  return x;
}

}  // namespace tandem

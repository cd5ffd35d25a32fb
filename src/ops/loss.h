// The attributes of the loss family (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss), parsed
// once from the node and handed to the schema and to the reference kernels.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ir/ir.h"

namespace tandem {

struct LossAttrs {
  std::string reduction = "mean";       // none, sum or mean
  std::optional<int64_t> ignore_index;  // a target class that counts for nothing

  // Throws naming the node on an unknown reduction.
  static LossAttrs parse(const Node& node);
};

}  // namespace tandem

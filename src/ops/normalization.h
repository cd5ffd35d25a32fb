// The attributes of the normalization family, parsed once from the node and handed to the schema
// and to every kernel, so each attribute's default and rule live here only. One struct serves the
// family; each op reads the fields its ONNX definition has.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/ir.h"

namespace tandem {

struct NormAttrs {
  float epsilon = 1e-5f;
  // LayerNormalization: the first normalised axis; LpNormalization: the normalised axis. As
  // written (may be negative).
  int64_t axis = -1;
  int64_t p = 2;           // LpNormalization: 1 or 2
  int64_t stash_type = 1;  // LayerNormalization: the statistics' dtype, 1 (float32) or 11 (float64)
  int64_t num_groups = 0;  // GroupNormalization, GroupNorm: >= 1
  bool silu = false;       // GroupNorm: activation "SiLU" (else "")
  // BatchNormalization: training mode was asked for (opset >= 14: training_mode = 1, computed
  // with the batch's statistics; before: the statistics outputs are wired, which is refused).
  bool training = false;
  float momentum =
      0.9f;  // BatchNormalization, training: running = input * momentum + batch * (1 - momentum)
  // BatchNormalization, opset < 9 with spatial = 0: one statistic per element of a sample.
  bool per_element_stats = false;
  // BatchNormalization, opset < 7: is_test (the reference kernel computes inference either way).
  bool is_test = true;
  int64_t size = 0;                                // LRN: the channel window, >= 1
  float alpha = 1e-4f, beta = 0.75f, bias = 1.0f;  // LRN
  std::vector<int64_t> axes{0, 2, 3};              // MeanVarianceNormalization

  // Reads the attributes of the node's op and checks those that do not depend on shapes; throws
  // naming the node.
  static NormAttrs parse(const Node& node);
};

}  // namespace tandem

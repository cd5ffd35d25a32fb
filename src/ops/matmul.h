// The attributes of Gemm and of the fused Attention (com.tandem), parsed once from the node and
// handed to the schema and to every kernel, so their rules and shape checks live here only.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/ir.h"

namespace tandem {

// Y[M, N] = alpha * A'[M, K] * B'[K, N] + beta * C.
struct GemmDims {
  int64_t m = 0, k = 0, n = 0;
};

struct GemmAttrs {
  bool trans_a = false, trans_b = false;
  float alpha = 1.0f, beta = 1.0f;

  static GemmAttrs parse(const Node& node);

  // M, K and N for operands of shapes `a` and `b`; throws naming `node` unless both are 2-D with
  // the same inner dimension.
  GemmDims dims(const Shape& a, const Shape& b, const Node& node) const;
};

// Attention(Q, K, V, mask?, keep?) (its definition is in ops/matmul.cc).
struct AttentionAttrs {
  // Transposes of Q, K, V and the result; empty: none.
  std::vector<int64_t> q_perm, k_perm, v_perm, out_perm;
  float scale = 1.0f;  // multiplies the scores
  float fill = 0.0f;   // the score where keep is false

  static AttentionAttrs parse(const Node& node);
};

}  // namespace tandem

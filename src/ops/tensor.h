// The attributes of the tensor family (Transpose, Concat and the rest), parsed once from the node
// and handed to the schema and to every kernel (reference and CPU), so their defaults and checks
// live here only. Slice has its own (ops/slice.h), Einsum its equation (ops/einsum.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem {

struct TransposeAttrs {
  std::vector<int64_t> perm;  // as written; empty: the axes reversed

  static TransposeAttrs parse(const Node& node);

  // The permutation of an input of `rank` axes: perm, or the axes reversed when none was written.
  // Throws naming the node when perm is not a permutation of 0..rank-1.
  std::vector<int64_t> perm_for(int64_t rank, const Node& node) const;
};

struct ConcatAttrs {
  int64_t axis = 0;  // as written (required); may be negative

  static ConcatAttrs parse(const Node& node);
};

// Split, Gather*, Scatter*, Pad, DepthToSpace, SpaceToDepth, OneHot, Trilu, CumSum, TopK: one
// struct for the family; each op reads the fields its ONNX definition has.
struct TensorOpAttrs {
  // Split, Gather, GatherElements, ScatterElements, Scatter: default 0; OneHot, TopK: default -1.
  // As written (may be negative).
  int64_t axis = 0;
  std::vector<int64_t> split;      // Split before opset 13 (an input from 13)
  int64_t num_outputs = 0;         // Split from opset 18; 0 when absent
  int64_t batch_dims = 0;          // GatherND
  std::string reduction = "none";  // ScatterElements, ScatterND: none, add, mul, max, min
  std::string mode;                // Pad: constant, reflect or edge; DepthToSpace: DCR or CRD
  std::vector<int64_t> pads;       // Pad before opset 11 (inputs from 11)
  float value = 0;                 // Pad before opset 11
  int64_t blocksize = 0;           // DepthToSpace, SpaceToDepth: >= 1
  bool upper = true;               // Trilu
  bool exclusive = false, reverse = false;  // CumSum
  bool largest = true;                      // TopK
  int64_t k = -1;  // TopK before opset 10 (an input from 10); -1 when absent

  // Reads the attributes of the node's op and checks those that do not depend on shapes.
  static TensorOpAttrs parse(const Node& node);
};

}  // namespace tandem

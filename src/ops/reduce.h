// The attributes of the reduce family (Reduce*, ArgMax, ArgMin), parsed once from the node and
// handed to the schema and to the reference kernels, with the rule for which axes are reduced.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include "ir/ir.h"

namespace tandem {

struct ReduceAttrs {
  bool keepdims = true;
  // Reduce*: axes is input 1 from opset 18 (ReduceSum: 13); before, the `axes` attribute.
  bool axes_from_input = false;
  std::vector<int64_t> axes;  // the attribute, when !axes_from_input
  bool noop_with_empty_axes = false;
  int64_t axis = 0;                // ArgMax, ArgMin; as written (may be negative)
  bool select_last_index = false;  // ArgMax, ArgMin

  static ReduceAttrs parse(const Node& node);

  // The axes a Reduce* node reduces for an input of `rank`, given the axes input's value (nullptr
  // when absent): every axis when none are named, none (`noop`) when none are named and
  // noop_with_empty_axes is set. Throws naming the node on an axis out of range.
  struct Reduced {
    bool noop = false;
    std::set<int64_t> axes;  // normalised
  };
  Reduced reduced(int64_t rank, const Tensor* axes_input, const Node& node) const;
};

}  // namespace tandem

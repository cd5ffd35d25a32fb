// The attributes of the selection family (Compress, Unique, ReverseSequence), parsed once from the
// node and handed to the schema and to the reference kernels.
#pragma once

#include <cstdint>
#include <optional>

#include "ir/ir.h"

namespace tandem {

struct SelectionAttrs {
  std::optional<int64_t> axis;  // Compress, Unique: as written; absent: the flattened input
  bool sorted = true;           // Unique
  int64_t batch_axis = 1, time_axis = 0;  // ReverseSequence: as written

  static SelectionAttrs parse(const Node& node);
};

}  // namespace tandem

// The attributes of Transpose and Concat, parsed once from the node and handed to the schema and
// to every kernel (reference and CPU), so their defaults and checks live here only.
#pragma once

#include <cstdint>
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

}  // namespace tandem

// Data movement shared by reference kernels of several families (Transpose, Slice, Expand, Tile,
// ...): every layout change they make is one strided copy.
#pragma once

#include <cstdint>
#include <vector>

#include "backends/backend.h"

namespace tandem {

// Copies a strided view of `src` (strides in elements per output axis; 0 repeats, negative walks
// backwards) into the contiguous `dst` of `shape`. Axes that are contiguous in the source are
// merged, and rows whose source is contiguous are copied with memcpy.
void strided_copy(const KernelContext& ctx, uint8_t* dst, const uint8_t* src, const Shape& shape,
                  const std::vector<int64_t>& strides, int64_t esize);

}  // namespace tandem

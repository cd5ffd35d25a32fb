// Float matrix transposes for the CPU backend's NCHW <-> NHWC layout changes (cpu/layout.cc).
#pragma once

#include <cstdint>

#include "backends/backend.h"

namespace tandem::cpu {

// For each of `batch` consecutive rows x cols row-major matrices of 4-byte elements in `src`,
// writes its cols x rows transpose to `dst` (the bits are moved, not converted). NCHW -> NHWC is
// rows = C, cols = H * W; NHWC -> NCHW is rows = H * W, cols = C. Large matrices are split over
// the pool's threads.
void transpose_matrices(const KernelContext& ctx, const void* src, void* dst, int64_t batch,
                        int64_t rows, int64_t cols);

}  // namespace tandem::cpu

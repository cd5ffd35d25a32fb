// Assigns arena offsets to intermediate buffers from their lifetimes: two buffers may share
// bytes only when their lifetimes do not overlap. Greedy by size (largest first, lowest offset
// that fits), the strategy TFLite's and ONNX Runtime's planners also start from.
#pragma once

#include <cstddef>
#include <vector>

namespace tandem {

struct BufferRequest {
  size_t bytes = 0;
  int first_step = 0;  // the step that writes it
  int last_step = 0;   // the last step that reads it (inclusive)
};

struct MemoryPlan {
  std::vector<size_t> offsets;  // one per request
  size_t arena_bytes = 0;       // size of the arena holding them all
  size_t unplanned_bytes = 0;   // sum of all sizes (what no reuse would cost)
};

MemoryPlan plan_memory(const std::vector<BufferRequest>& requests, size_t alignment = 64);

// True when no two requests that live at the same time overlap in the plan (used by tests and
// by debug checks).
bool memory_plan_is_valid(const std::vector<BufferRequest>& requests, const MemoryPlan& plan);

}  // namespace tandem

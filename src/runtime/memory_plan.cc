#include "runtime/memory_plan.h"

#include <algorithm>
#include <numeric>

namespace tandem {

namespace {
size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }
bool lifetimes_overlap(const BufferRequest& a, const BufferRequest& b) {
  return a.first_step <= b.last_step && b.first_step <= a.last_step;
}
}  // namespace

MemoryPlan plan_memory(const std::vector<BufferRequest>& requests, size_t alignment) {
  MemoryPlan plan;
  plan.offsets.assign(requests.size(), 0);
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return requests[a].bytes > requests[b].bytes; });

  std::vector<size_t> placed;  // indices already given an offset
  for (size_t idx : order) {
    const BufferRequest& r = requests[idx];
    plan.unplanned_bytes += r.bytes;
    size_t size = align_up(std::max<size_t>(r.bytes, 1), alignment);
    // Occupied ranges of buffers alive at the same time, by offset.
    std::vector<std::pair<size_t, size_t>> busy;
    for (size_t p : placed)
      if (lifetimes_overlap(r, requests[p]))
        busy.emplace_back(plan.offsets[p], plan.offsets[p] + align_up(std::max<size_t>(requests[p].bytes, 1), alignment));
    std::sort(busy.begin(), busy.end());
    size_t offset = 0;
    for (auto [begin, end] : busy) {
      if (offset + size <= begin) break;  // fits in the gap before this range
      offset = std::max(offset, end);
    }
    plan.offsets[idx] = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + size);
    placed.push_back(idx);
  }
  return plan;
}

bool memory_plan_is_valid(const std::vector<BufferRequest>& requests, const MemoryPlan& plan) {
  for (size_t i = 0; i < requests.size(); ++i) {
    for (size_t j = i + 1; j < requests.size(); ++j) {
      if (!lifetimes_overlap(requests[i], requests[j])) continue;
      size_t ai = plan.offsets[i], bi = ai + requests[i].bytes;
      size_t aj = plan.offsets[j], bj = aj + requests[j].bytes;
      if (requests[i].bytes && requests[j].bytes && ai < bj && aj < bi) return false;
    }
    if (plan.offsets[i] + requests[i].bytes > plan.arena_bytes) return false;
  }
  return true;
}

}  // namespace tandem

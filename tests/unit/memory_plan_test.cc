// The memory planner: buffers alive at the same time never share bytes; others do.
#include <gtest/gtest.h>

#include <random>

#include "runtime/memory_plan.h"

namespace tandem {
namespace {

TEST(MemoryPlan, ChainReusesMemory) {
  // a -> b -> c -> d: each buffer lives from its step to the next; a and c can share.
  std::vector<BufferRequest> r = {{1000, 0, 1}, {1000, 1, 2}, {1000, 2, 3}, {1000, 3, 4}};
  MemoryPlan p = plan_memory(r);
  EXPECT_TRUE(memory_plan_is_valid(r, p));
  EXPECT_EQ(p.unplanned_bytes, 4000u);
  EXPECT_LE(p.arena_bytes, 2 * 1024u);  // two 64-aligned slots
  EXPECT_EQ(p.offsets[0], p.offsets[2]);
}

TEST(MemoryPlan, OverlappingLifetimesGetDisjointRanges) {
  std::vector<BufferRequest> r = {{100, 0, 5}, {200, 1, 4}, {300, 2, 3}};
  MemoryPlan p = plan_memory(r);
  EXPECT_TRUE(memory_plan_is_valid(r, p));
  EXPECT_GE(p.arena_bytes, 600u);
}

TEST(MemoryPlan, OffsetsAreAligned) {
  std::vector<BufferRequest> r = {{3, 0, 2}, {5, 1, 2}, {7, 2, 3}};
  MemoryPlan p = plan_memory(r, 64);
  for (size_t o : p.offsets) EXPECT_EQ(o % 64, 0u);
}

TEST(MemoryPlan, RandomLifetimesAreAlwaysValidAndNeverWorseThanNoReuse) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<BufferRequest> r;
    int n = 1 + rng() % 40;
    size_t aligned_total = 0;
    for (int i = 0; i < n; ++i) {
      int first = rng() % 30;
      size_t bytes = rng() % 5000;
      r.push_back({bytes, first, first + static_cast<int>(rng() % 10)});
      aligned_total += (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
    }
    MemoryPlan p = plan_memory(r);
    ASSERT_TRUE(memory_plan_is_valid(r, p)) << "trial " << trial;
    EXPECT_LE(p.arena_bytes, aligned_total);
  }
}

TEST(MemoryPlan, DetectsAnInvalidPlan) {
  std::vector<BufferRequest> r = {{100, 0, 2}, {100, 1, 3}};
  MemoryPlan bad;
  bad.offsets = {0, 50};
  bad.arena_bytes = 200;
  EXPECT_FALSE(memory_plan_is_valid(r, bad));
}

}  // namespace
}  // namespace tandem

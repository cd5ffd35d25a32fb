// The one gather both engines use (parallel/batch.h gather_outputs): placement, trimming,
// concatenation, and refusal of shards that disagree — never a copy past a buffer.
#include <gtest/gtest.h>

#include "parallel/batch.h"
#include "tandem/status.h"

namespace tandem::parallel {
namespace {

std::vector<float> iota(size_t n, float from) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = from + static_cast<float>(i);
  return v;
}

TEST(ParallelMemory, GatherPlacesShardRowsAndTrimsPadding) {
  std::vector<TensorInfo> declared(1);
  declared[0].name = "y";
  declared[0].dtype = DataType::kFloat32;
  declared[0].shape = {-1, 2};
  // A fixed batch of 2 over a request of 3 items: shards [0,2) and [2,4), the last padded.
  std::vector<ShardPlan> shards = {{0, 0, 2}, {1, 2, 2}};
  auto a = iota(4, 0), b = iota(4, 10);
  auto outs =
      gather_outputs(declared, {true}, shards, 3,
                     {{{DataType::kFloat32, {2, 2}, reinterpret_cast<uint8_t*>(a.data())}},
                      {{DataType::kFloat32, {2, 2}, reinterpret_cast<uint8_t*>(b.data())}}});
  ASSERT_EQ(outs[0].shape(), (Shape{3, 2}));
  EXPECT_EQ(outs[0].data<float>()[4], 10.f);
  EXPECT_EQ(outs[0].data<float>()[5], 11.f);
}

TEST(ParallelMemory, GatherRefusesShardsThatDisagree) {
  std::vector<TensorInfo> declared(1);
  declared[0].name = "y";
  declared[0].dtype = DataType::kInt64;
  declared[0].shape = {-1, -1};
  std::vector<ShardPlan> shards = {{0, 0, 1}, {1, 1, 1}};
  std::vector<int64_t> wide(2 * 64, 1), narrow(2, 1);
  auto* w = reinterpret_cast<uint8_t*>(wide.data());
  auto* n = reinterpret_cast<uint8_t*>(narrow.data());
  // Different trailing dims (a NonZero model): the heap overflow of issue 10, defect 5.
  EXPECT_THROW(gather_outputs(declared, {true}, shards, 2,
                              {{{DataType::kInt64, {2, 1}, n}}, {{DataType::kInt64, {2, 64}, w}}}),
               Error);
  // A missing output, another dtype, another rank.
  EXPECT_THROW(gather_outputs(declared, {true}, shards, 2, {{{DataType::kInt64, {1, 1}, n}}, {}}),
               Error);
  EXPECT_THROW(gather_outputs(declared, {true}, shards, 2,
                              {{{DataType::kInt64, {1, 1}, n}}, {{DataType::kInt32, {1, 1}, n}}}),
               Error);
  EXPECT_THROW(gather_outputs(declared, {true}, shards, 2,
                              {{{DataType::kInt64, {1, 1}, n}}, {{DataType::kInt64, {1}, n}}}),
               Error);
  // Dim 0 that does not follow the shards but trailing dims agree: concatenated.
  auto outs = gather_outputs(declared, {true}, shards, 2,
                             {{{DataType::kInt64, {2, 1}, n}}, {{DataType::kInt64, {1, 1}, n}}});
  EXPECT_EQ(outs[0].shape(), (Shape{3, 1}));
}

}  // namespace
}  // namespace tandem::parallel

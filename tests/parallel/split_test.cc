// Splitting and device resolution: pure functions, no processes.
#include <gtest/gtest.h>

#include <numeric>

#include "parallel/batch.h"
#include "parallel/device.h"
#include "parallel/splitter.h"
#include "tandem/parallel.h"

namespace tandem::parallel {
namespace {

int64_t total(const std::vector<ShardPlan>& s) {
  int64_t n = 0;
  for (auto& p : s) n += p.count;
  return n;
}

TEST(Split, RaggedBatchOverTwoEqualWorkers) {
  auto s = split_batch(5, {1.0, 1.0});
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].count + s[1].count, 5);
  EXPECT_EQ(std::max(s[0].count, s[1].count), 3);
  EXPECT_EQ(s[0].begin, 0);
  EXPECT_EQ(s[1].begin, s[0].count);
}

TEST(Split, SmallBatchUsesFewerWorkers) {
  auto s = split_batch(2, {1.0, 3.0, 2.0, 1.0});
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].worker, 1);  // the two fastest, in worker order
  EXPECT_EQ(s[1].worker, 2);
  EXPECT_EQ(total(s), 2);
}

TEST(Split, SharesFollowSpeed) {
  auto s = split_batch(12, {1.0, 2.0});
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].count, 4);
  EXPECT_EQ(s[1].count, 8);
}

TEST(Split, DownWorkersAreSkipped) {
  auto s = split_batch(4, {0.0, 1.0});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].worker, 1);
  EXPECT_THROW(split_batch(4, {0.0, 0.0}), Error);
}

TEST(Split, EveryBatchIsCoveredExactlyOnce) {
  for (int workers = 1; workers <= 5; ++workers)
    for (int64_t batch = 1; batch <= 20; ++batch) {
      std::vector<double> speeds(workers);
      for (int w = 0; w < workers; ++w) speeds[w] = 1.0 + w % 3;
      auto s = split_batch(batch, speeds);
      int64_t next = 0;
      for (auto& p : s) {
        EXPECT_EQ(p.begin, next);
        EXPECT_GE(p.count, 1);
        next += p.count;
      }
      EXPECT_EQ(next, batch);
    }
}

TEST(Split, FixedBatchMakesWholeShards) {
  auto s = split_batch(5, {1.0, 1.0}, 2);
  ASSERT_EQ(s.size(), 3u);
  for (size_t i = 0; i < s.size(); ++i) {
    EXPECT_EQ(s[i].count, 2);
    EXPECT_EQ(s[i].begin, static_cast<int64_t>(2 * i));
  }
  EXPECT_NE(s[0].worker, s[1].worker);  // spread over both workers
}

TEST(Devices, ListAndCount) {
  EXPECT_EQ(parse_device_list("cpu:0, cpu:1"), (std::vector<std::string>{"cpu:0", "cpu:1"}));
  EXPECT_EQ(parse_device_list("3"), (std::vector<std::string>{"cpu:0", "cpu:1", "cpu:2"}));
  EXPECT_THROW(parse_device_list(""), Error);
  EXPECT_THROW(parse_device_list("0"), Error);
}

TEST(Devices, CoresAreSplitEvenly) {
  auto specs = resolve_devices({"cpu:0", "cpu:1"}, {}, 8);
  EXPECT_EQ(specs[0].cores, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(specs[1].cores, (std::vector<int>{4, 5, 6, 7}));
  auto over = resolve_devices({"cpu:0", "cpu:1", "cpu:2"}, {}, 2);
  EXPECT_EQ(over[2].cores, (std::vector<int>{0}));
  auto given = resolve_devices({"cpu:0"}, {{5, 6}}, 8);
  EXPECT_EQ(given[0].cores, (std::vector<int>{5, 6}));
  EXPECT_THROW(resolve_devices({"gpu:0"}, {}, 2), Error);
  EXPECT_THROW(resolve_devices({"cpu:x"}, {}, 2), Error);
  EXPECT_EQ(parse_core_list("0-2,5"), (std::vector<int>{0, 1, 2, 5}));
  EXPECT_THROW(parse_core_list("3-1"), Error);
}

TEST(Batch, InputsWithoutTheBatchGoWhole) {
  std::vector<TensorInfo> declared = {
      {"sample", DataType::kFloat32, {-1, 4}, {"batch", ""}},
      {"timestep", DataType::kFloat32, {1}, {""}},
  };
  std::vector<Tensor> in = {Tensor(DataType::kFloat32, {5, 4}, "sample"),
                            Tensor(DataType::kFloat32, {1}, "timestep")};
  BatchedInputs b = analyse_inputs(declared, in);
  EXPECT_EQ(b.batch, 5);
  EXPECT_EQ(b.batched, (std::vector<bool>{true, false}));
  EXPECT_EQ(b.fixed_batch, 0);
  auto shards = split_batch(5, {1, 1});
  RequestLayout l = layout_inputs(b, shards);
  EXPECT_EQ(l.shard_inputs[1][0].shape, (Shape{2, 4}));
  EXPECT_EQ(l.shard_inputs[1][0].offset, l.input_offset[0] + 3 * 4 * 4);
  EXPECT_EQ(l.shard_inputs[1][1].shape, (Shape{1}));
}

TEST(Batch, FixedBatchModelPadsTheTail) {
  std::vector<TensorInfo> declared = {{"x", DataType::kFloat32, {2, 3}, {"", ""}}};
  Tensor x(DataType::kFloat32, {5, 3}, "x");
  for (int i = 0; i < 15; ++i) x.data<float>()[i] = static_cast<float>(i);
  std::vector<Tensor> inputs = {x};  // analyse_inputs keeps pointers into this vector
  BatchedInputs b = analyse_inputs(declared, inputs);
  EXPECT_EQ(b.fixed_batch, 2);
  auto shards = split_batch(5, {1, 1}, b.fixed_batch);
  RequestLayout l = layout_inputs(b, shards);
  EXPECT_EQ(l.padded_batch, 6);
  std::vector<uint8_t> buf(l.input_bytes);
  write_inputs(b, l, buf.data());
  const float* f = reinterpret_cast<const float*>(buf.data() + l.input_offset[0]);
  EXPECT_EQ(f[14], 14.f);
  EXPECT_EQ(f[15], 12.f);  // the padding row repeats the last item
}

TEST(Batch, BadInputsAreRefusedByName) {
  std::vector<TensorInfo> declared = {{"x", DataType::kFloat32, {-1, 3}, {"batch", ""}}};
  EXPECT_THROW(analyse_inputs(declared, {Tensor(DataType::kInt64, {2, 3}, "x")}), Error);
  EXPECT_THROW(analyse_inputs(declared, {Tensor(DataType::kFloat32, {2, 4}, "x")}), Error);
  EXPECT_THROW(analyse_inputs(declared, {Tensor(DataType::kFloat32, {2, 3}, "y")}), Error);
  EXPECT_THROW(analyse_inputs(declared, {}), Error);
}

}  // namespace
}  // namespace tandem::parallel

// Compress, Unique, ReverseSequence, Det: expected values worked out by hand.
#include <gtest/gtest.h>

#include <vector>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::f32;
using testing::i64;
using testing::max_abs_diff;
using testing::OpTest;
Tensor cond(std::vector<uint8_t> v) {
  return Tensor::from_vector(DataType::kBool, {int64_t(v.size())}, v);
}

TEST(Compress, AxisAndFlattened) {
  Tensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  auto a1 = OpTest("Compress").inputs({x, cond({1, 0, 1})}).attr("axis", 1).run_ref();
  EXPECT_EQ(max_abs_diff(a1[0], f32({2, 2}, {1, 3, 4, 6})), 0);
  // A condition shorter than the axis drops the rest.
  auto a0 = OpTest("Compress").inputs({x, cond({0})}).attr("axis", 0).run_ref();
  EXPECT_EQ(a0[0].shape(), (Shape{0, 3}));
  auto flat = OpTest("Compress").inputs({x, cond({0, 1, 0, 0, 1})}).run_ref();
  EXPECT_EQ(max_abs_diff(flat[0], f32({2}, {2, 5})), 0);
}

TEST(Unique, SortedUnsortedAndAxis) {
  Tensor x = f32({6}, {2, 1, 1, 3, 4, 3});
  auto s = OpTest("Unique").inputs({x}).outputs(4).opset(11).run_ref();
  EXPECT_EQ(max_abs_diff(s[0], f32({4}, {1, 2, 3, 4})), 0);
  EXPECT_EQ(max_abs_diff(s[1], i64({4}, {1, 0, 3, 4})), 0);
  EXPECT_EQ(max_abs_diff(s[2], i64({6}, {1, 0, 0, 2, 3, 2})), 0);
  EXPECT_EQ(max_abs_diff(s[3], i64({4}, {2, 1, 2, 1})), 0);
  auto u = OpTest("Unique").inputs({x}).attr("sorted", 0).outputs(4).opset(11).run_ref();
  EXPECT_EQ(max_abs_diff(u[0], f32({4}, {2, 1, 3, 4})), 0);
  // Rows along axis 0: [1,0], [0,1], [1,0] -> sorted [0,1], [1,0].
  auto a = OpTest("Unique")
               .inputs({f32({3, 2}, {1, 0, 0, 1, 1, 0})})
               .attr("axis", 0)
               .outputs(4)
               .opset(11)
               .run_ref();
  EXPECT_EQ(max_abs_diff(a[0], f32({2, 2}, {0, 1, 1, 0})), 0);
  EXPECT_EQ(max_abs_diff(a[2], i64({3}, {1, 0, 1})), 0);
}

TEST(ReverseSequence, BatchAxis0) {
  // [batch 2, time 3]; lengths 2 and 3.
  auto out = OpTest("ReverseSequence")
                 .inputs({f32({2, 3}, {1, 2, 3, 4, 5, 6}), i64({2}, {2, 3})})
                 .attr("batch_axis", 0)
                 .attr("time_axis", 1)
                 .opset(10)
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({2, 3}, {2, 1, 3, 6, 5, 4})), 0);
}

TEST(Det, BatchOfMatrices) {
  // det [[1,2],[3,4]] = -2; det of a row swap of the identity = -1; 3x3 example = 1*(5*9-6*8)
  // - 2*(4*9-6*7) + 3*(4*8-5*7) = -3 + 12 - 9 = 0 with the last entry 9; use 10: -3.
  auto out = OpTest("Det").input(f32({2, 2, 2}, {1, 2, 3, 4, 0, 1, 1, 0})).run_ref();
  EXPECT_LT(max_abs_diff(out[0], f32({2}, {-2, -1})), 1e-6);
  auto d3 = OpTest("Det").input(f32({3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 10})).run_ref();
  EXPECT_LT(max_abs_diff(d3[0], f32({}, {-3})), 1e-5);
}

TEST(SelectionErrors, BadInputs) {
  EXPECT_THROW(OpTest("ReverseSequence")
                   .inputs({f32({2, 2}, {1, 2, 3, 4}), i64({2}, {3, 1})})
                   .opset(10)
                   .run_ref(),
               Error);
  EXPECT_THROW(OpTest("Det").input(f32({2, 3}, {1, 2, 3, 4, 5, 6})).run_ref(), Error);
  EXPECT_THROW(
      OpTest("Compress").inputs({f32({2}, {1, 2}), cond({1, 1, 1})}).attr("axis", 0).run_ref(),
      Error);
}

}  // namespace
}  // namespace tandem

// Softmax, LogSoftmax, Hardmax: expected values from exp/log written out here.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::f32;
using testing::max_abs_diff;
using testing::OpTest;

// Softmax over groups: element i belongs to group group_of(i).
template <typename G>
std::vector<float> softmax_by_group(const std::vector<float>& x, G group_of, bool log) {
  std::map<int64_t, double> sum;
  for (size_t i = 0; i < x.size(); ++i) sum[group_of(i)] += std::exp(double(x[i]));
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double s = sum[group_of(i)];
    y[i] = log ? float(x[i] - std::log(s)) : float(std::exp(double(x[i])) / s);
  }
  return y;
}

const std::vector<float> kX = {0.1f,  -1.2f, 2.0f, 0.5f,  0.0f, 1.5f,
                               -0.3f, 0.7f,  1.1f, -2.0f, 0.2f, 0.9f};

TEST(Softmax, Opset13LastAxisDefault) {
  auto out = OpTest("Softmax").inputs({f32({4, 3}, kX)}).opset(13).run_ref();
  auto want = softmax_by_group(
      kX, [](size_t i) { return int64_t(i / 3); }, false);
  EXPECT_LT(max_abs_diff(out[0], f32({4, 3}, want)), 1e-6);
}

TEST(Softmax, Opset13MiddleAxis) {
  // [2,3,2], axis 1: group = (outer, inner).
  auto out = OpTest("Softmax").inputs({f32({2, 3, 2}, kX)}).attr("axis", 1).opset(13).run_ref();
  auto want = softmax_by_group(
      kX, [](size_t i) { return int64_t(i / 6 * 2 + i % 2); }, false);
  EXPECT_LT(max_abs_diff(out[0], f32({2, 3, 2}, want)), 1e-6);
}

TEST(Softmax, Opset11CoercesTo2D) {
  // [2,2,3] with the default axis 1 at opset 11: each of the 2 rows of 6 elements.
  auto out = OpTest("Softmax").inputs({f32({2, 2, 3}, kX)}).opset(11).run_ref();
  auto want = softmax_by_group(
      kX, [](size_t i) { return int64_t(i / 6); }, false);
  EXPECT_LT(max_abs_diff(out[0], f32({2, 2, 3}, want)), 1e-6);
  auto lout = OpTest("LogSoftmax").inputs({f32({2, 2, 3}, kX)}).attr("axis", 2).opset(11).run_ref();
  auto lwant = softmax_by_group(
      kX, [](size_t i) { return int64_t(i / 3); }, true);
  EXPECT_LT(max_abs_diff(lout[0], f32({2, 2, 3}, lwant)), 1e-5);
}

TEST(Softmax, LargeValuesStayFinite) {
  auto out = OpTest("Softmax").input(f32({3}, {1000, 1001, 1002})).run_ref();
  auto want = softmax_by_group(
      {0, 1, 2}, [](size_t) { return int64_t(0); }, false);
  EXPECT_LT(max_abs_diff(out[0], f32({3}, want)), 1e-6);
  auto lout = OpTest("LogSoftmax").input(f32({3}, {1000, 1001, 1002})).run_ref();
  auto lwant = softmax_by_group(
      {0, 1, 2}, [](size_t) { return int64_t(0); }, true);
  EXPECT_LT(max_abs_diff(lout[0], f32({3}, lwant)), 1e-5);
}

TEST(Hardmax, FirstMaximumWins) {
  auto out = OpTest("Hardmax").inputs({f32({2, 3}, {1, 3, 3, -1, -5, -2})}).opset(13).run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({2, 3}, {0, 1, 0, 1, 0, 0})), 0);
  auto axis0 = OpTest("Hardmax")
                   .inputs({f32({2, 3}, {1, 3, 3, -1, -5, 4})})
                   .attr("axis", 0)
                   .opset(13)
                   .run_ref();
  EXPECT_EQ(max_abs_diff(axis0[0], f32({2, 3}, {1, 1, 0, 0, 0, 1})), 0);
}

TEST(Softmax, DoubleAndBadAxis) {
  auto out = OpTest("Softmax")
                 .input(Tensor::from_vector<double>(DataType::kFloat64, {2}, {0, 0}))
                 .run_ref();
  EXPECT_DOUBLE_EQ(out[0].data<double>()[1], 0.5);
  EXPECT_THROW(OpTest("Softmax").input(f32({2, 3}, kX)).attr("axis", 2).run_ref(), Error);
  EXPECT_THROW(OpTest("Softmax")
                   .input(Tensor::from_vector<int32_t>(DataType::kInt32, {2}, {1, 2}))
                   .run_ref(),
               Error);
}

}  // namespace
}  // namespace tandem

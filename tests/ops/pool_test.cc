// Pool family: expected values are computed by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_int;
using testing::attr_ints;
using testing::f32;
using testing::i64;
using testing::max_abs_diff;
using testing::OpTest;

// 4x4 ramp 1..16.
Tensor ramp4x4() {
  std::vector<float> v(16);
  for (int i = 0; i < 16; ++i) v[i] = float(i + 1);
  return f32({1, 1, 4, 4}, v);
}

TEST(MaxPool, StridedWithIndices) {
  Tensor x = ramp4x4();
  auto y = OpTest("MaxPool")
               .inputs({x})
               .attr("kernel_shape", {2, 2})
               .attr("strides", {2, 2})
               .outputs(2)
               .run_ref();
  EXPECT_EQ(max_abs_diff(y[0], f32({1, 1, 2, 2}, {6, 8, 14, 16})), 0.0);
  EXPECT_EQ(max_abs_diff(y[1], i64({1, 1, 2, 2}, {5, 7, 13, 15})), 0.0);
  // Column-major indices: position (h, w) numbered h + w * 4.
  y = OpTest("MaxPool")
          .inputs({x})
          .attr("kernel_shape", {2, 2})
          .attr("strides", {2, 2})
          .attr("storage_order", 1)
          .outputs(2)
          .run_ref();
  EXPECT_EQ(max_abs_diff(y[1], i64({1, 1, 2, 2}, {1 + 4, 1 + 12, 3 + 4, 3 + 12})), 0.0);
}

TEST(MaxPool, IndicesCountBatchAndChannel) {
  // Second plane of [1, 2, 2] input: indices are flat over the whole tensor.
  Tensor x = f32({1, 2, 3}, {3, 1, 2, 0, 5, 4});
  auto y = OpTest("MaxPool").inputs({x}).attr("kernel_shape", {3}).outputs(2).run_ref();
  EXPECT_EQ(max_abs_diff(y[0], f32({1, 2, 1}, {3, 5})), 0.0);
  EXPECT_EQ(max_abs_diff(y[1], i64({1, 2, 1}, {0, 4})), 0.0);
}

TEST(MaxPool, CeilModeDilationAndPads) {
  Tensor x = ramp4x4();
  // kernel 3, stride 2, ceil: (4 - 3) / 2 rounds up to 1 -> 2 outputs per axis.
  auto y = OpTest("MaxPool")
               .input(x)
               .attr("kernel_shape", {3, 3})
               .attr("strides", {2, 2})
               .attr("ceil_mode", 1)
               .run_ref();
  EXPECT_EQ(max_abs_diff(y[0], f32({1, 1, 2, 2}, {11, 12, 15, 16})), 0.0);
  // Dilation 2, kernel 2: taps at i and i + 2.
  y = OpTest("MaxPool").input(x).attr("kernel_shape", {2, 2}).attr("dilations", {2, 2}).run_ref();
  EXPECT_EQ(max_abs_diff(y[0], f32({1, 1, 2, 2}, {11, 12, 15, 16})), 0.0);
  // Padding never wins, even against negative values.
  Tensor neg = f32({1, 1, 2}, {-5, -7});
  y = OpTest("MaxPool").input(neg).attr("kernel_shape", {2}).attr("pads", {1, 1}).run_ref();
  EXPECT_EQ(max_abs_diff(y[0], f32({1, 1, 3}, {-5, -5, -7})), 0.0);
}

TEST(MaxPool, Uint8) {
  Tensor x = Tensor::from_vector(DataType::kUInt8, {1, 1, 4}, std::vector<uint8_t>{1, 200, 3, 250});
  auto y = OpTest("MaxPool").input(x).attr("kernel_shape", {2}).attr("strides", {2}).run_ref();
  EXPECT_EQ(y[0].data<uint8_t>()[0], 200);
  EXPECT_EQ(y[0].data<uint8_t>()[1], 250);
}

TEST(AveragePool, PadsWithAndWithoutCount) {
  Tensor x = f32({1, 1, 3}, {3, 6, 9});
  std::map<std::string, Attribute> attrs{{"kernel_shape", attr_ints({2})},
                                         {"pads", attr_ints({1, 1})}};
  auto y = OpTest("AveragePool").input(x).attrs(attrs).run_ref();
  EXPECT_LT(max_abs_diff(y[0], f32({1, 1, 4}, {3, 4.5f, 7.5f, 9})), 1e-6);
  attrs["count_include_pad"] = attr_int(1);
  y = OpTest("AveragePool").input(x).attrs(attrs).run_ref();
  EXPECT_LT(max_abs_diff(y[0], f32({1, 1, 4}, {1.5f, 4.5f, 7.5f, 4.5f})), 1e-6);
}

TEST(AveragePool, SameUpper3D) {
  // 1x1x2x2x2 of ones; kernel 2, SAME_UPPER pads at the end: counts exclude padding -> all ones.
  Tensor x = f32({1, 1, 2, 2, 2}, std::vector<float>(8, 1.0f));
  auto y = OpTest("AveragePool")
               .input(x)
               .attr("kernel_shape", {2, 2, 2})
               .attr("auto_pad", "SAME_UPPER")
               .run_ref();
  EXPECT_EQ(y[0].shape(), (Shape{1, 1, 2, 2, 2}));
  EXPECT_LT(max_abs_diff(y[0], x), 1e-6);
}

TEST(LpPool, P2AndP1) {
  Tensor x = f32({1, 1, 4}, {3, -4, 1, 0});
  auto y = OpTest("LpPool").input(x).attr("kernel_shape", {2}).attr("strides", {2}).run_ref();
  EXPECT_LT(max_abs_diff(y[0], f32({1, 1, 2}, {5, 1})), 1e-6);
  y = OpTest("LpPool")
          .input(x)
          .attr("kernel_shape", {2})
          .attr("strides", {2})
          .attr("p", 1)
          .run_ref();
  EXPECT_LT(max_abs_diff(y[0], f32({1, 1, 2}, {7, 1})), 1e-6);
}

TEST(GlobalPool, AverageMaxLp) {
  Tensor x = f32({1, 2, 2, 2}, {1, 2, 3, 4, -1, -2, -3, 0});
  auto avg = OpTest("GlobalAveragePool").input(x).run_ref();
  EXPECT_EQ(avg[0].shape(), (Shape{1, 2, 1, 1}));
  EXPECT_LT(max_abs_diff(avg[0], f32({1, 2, 1, 1}, {2.5f, -1.5f})), 1e-6);
  auto mx = OpTest("GlobalMaxPool").input(x).run_ref();
  EXPECT_EQ(max_abs_diff(mx[0], f32({1, 2, 1, 1}, {4, 0})), 0.0);
  auto lp = OpTest("GlobalLpPool").input(x).run_ref();
  EXPECT_LT(
      max_abs_diff(lp[0], f32({1, 2, 1, 1}, {float(std::sqrt(30.0)), float(std::sqrt(14.0))})),
      1e-5);
}

TEST(Pool, Errors) {
  Tensor x = ramp4x4();
  // kernel_shape is required.
  EXPECT_THROW(OpTest("MaxPool").input(x).run_ref(), Error);
  // Window larger than the input.
  EXPECT_THROW(OpTest("AveragePool").input(x).attr("kernel_shape", {5, 5}).run_ref(), Error);
  // Wrong number of kernel dims.
  EXPECT_THROW(OpTest("MaxPool").input(x).attr("kernel_shape", {2}).run_ref(), Error);
  // AveragePool on integers is unsupported.
  Tensor xi = Tensor::from_vector(DataType::kInt32, {1, 1, 2}, std::vector<int32_t>{1, 2});
  try {
    OpTest("AveragePool").input(xi).attr("kernel_shape", {2}).run_ref();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
}

}  // namespace
}  // namespace tandem

// Activation family: each op against its textbook formula, evaluated here in double.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "core/half.h"
#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_float;
using testing::attr_string;
using testing::f32;
using testing::max_abs_diff;
using testing::OpTest;

const std::vector<float> kX = {-3.0f, -1.5f, -0.2f, 0.0f, 0.1f, 0.7f, 2.0f, 5.0f};

// Runs op on kX (shape [2,4]) and compares with f applied to each element.
void expect_formula(const std::string& op, const std::function<double(double)>& f,
                    const std::map<std::string, Attribute>& attrs = {}) {
  std::vector<float> want;
  for (float v : kX) want.push_back(static_cast<float>(f(v)));
  Tensor got = OpTest(op).input(f32({2, 4}, kX)).attrs(attrs).run_ref()[0];
  EXPECT_LT(max_abs_diff(got, f32({2, 4}, want)), 2e-6) << op;
}

TEST(Activation, Formulas) {
  expect_formula("Relu", [](double x) { return x > 0 ? x : 0; });
  expect_formula("LeakyRelu", [](double x) { return x < 0 ? 0.01 * x : x; });
  expect_formula("LeakyRelu", [](double x) { return x < 0 ? 0.3 * x : x; },
                 {{"alpha", attr_float(0.3f)}});
  expect_formula("Sigmoid", [](double x) { return 1 / (1 + std::exp(-x)); });
  expect_formula("HardSigmoid", [](double x) { return std::clamp(0.2 * x + 0.5, 0.0, 1.0); });
  expect_formula("HardSigmoid", [](double x) { return std::clamp(0.5 * x + 0.6, 0.0, 1.0); },
                 {{"alpha", attr_float(0.5f)}, {"beta", attr_float(0.6f)}});
  expect_formula("HardSwish", [](double x) { return x * std::clamp(x / 6 + 0.5, 0.0, 1.0); });
  expect_formula("Tanh", [](double x) { return std::tanh(x); });
  expect_formula("Elu", [](double x) { return x < 0 ? std::exp(x) - 1 : x; });
  expect_formula("Elu", [](double x) { return x < 0 ? 2 * (std::exp(x) - 1) : x; },
                 {{"alpha", attr_float(2.0f)}});
  expect_formula("Selu", [](double x) {
    const double a = 1.6732632423543772, g = 1.0507009873554805;
    return x <= 0 ? g * (a * std::exp(x) - a) : g * x;
  });
  expect_formula(
      "Celu", [](double x) { return std::max(0.0, x) + std::min(0.0, 2 * (std::exp(x / 2) - 1)); },
      {{"alpha", attr_float(2.0f)}});
  expect_formula("Softplus", [](double x) { return std::log(std::exp(x) + 1); });
  expect_formula("Softsign", [](double x) { return x / (1 + std::fabs(x)); });
  expect_formula("Mish", [](double x) { return x * std::tanh(std::log(1 + std::exp(x))); });
  expect_formula("ThresholdedRelu", [](double x) { return x > 1 ? x : 0; });
  expect_formula("Gelu", [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); });
  expect_formula("Gelu",
                 [](double x) {
                   return 0.5 * x *
                          (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
                 },
                 {{"approximate", attr_string("tanh")}});
  expect_formula("Shrink", [](double x) { return x < -0.5 ? x : x > 0.5 ? x : 0; });
  expect_formula("Shrink", [](double x) { return x < -1.5  ? x + 1
                                                 : x > 1.5 ? x - 1
                                                           : 0; },
                 {{"lambd", attr_float(1.5f)}, {"bias", attr_float(1.0f)}});
}

TEST(Activation, SigmoidAndSoftplusStayFinite) {
  Tensor got = OpTest("Sigmoid").input(f32({2}, {-1000.0f, 1000.0f})).run_ref()[0];
  EXPECT_EQ(got.data<float>()[0], 0.0f);
  EXPECT_EQ(got.data<float>()[1], 1.0f);
  got = OpTest("Softplus").input(f32({2}, {-1000.0f, 1000.0f})).run_ref()[0];
  EXPECT_EQ(got.data<float>()[0], 0.0f);
  EXPECT_EQ(got.data<float>()[1], 1000.0f);
}

TEST(Activation, ReluOnIntegersAndFloat16) {
  Tensor i = Tensor::from_vector(DataType::kInt32, {3}, std::vector<int32_t>{-4, 0, 7});
  Tensor out = OpTest("Relu").input(i).run_ref()[0];
  EXPECT_EQ(out.data<int32_t>()[0], 0);
  EXPECT_EQ(out.data<int32_t>()[2], 7);
  std::vector<uint16_t> h = {float_to_half(-1.0f), float_to_half(2.5f)};
  Tensor hout = OpTest("Relu").input(Tensor::from_vector(DataType::kFloat16, {2}, h)).run_ref()[0];
  ASSERT_EQ(hout.dtype(), DataType::kFloat16);
  EXPECT_EQ(half_to_float(hout.data<uint16_t>()[0]), 0.0f);
  EXPECT_EQ(half_to_float(hout.data<uint16_t>()[1]), 2.5f);
}

TEST(Activation, PReluBroadcastsSlope) {
  // X [1,2,2,2], slope [2,1,1]: one slope per channel.
  Tensor x = f32({1, 2, 2, 2}, {-1, 2, -3, 4, -1, 2, -3, 4});
  Tensor out = OpTest("PRelu").inputs({x, f32({2, 1, 1}, {0.5f, 0.1f})}).run_ref()[0];
  EXPECT_LT(max_abs_diff(out, f32({1, 2, 2, 2}, {-0.5f, 2, -1.5f, 4, -0.1f, 2, -0.3f, 4})), 1e-7);
  out = OpTest("PRelu").inputs({x, f32({1}, {0.25f})}).run_ref()[0];
  EXPECT_EQ(out.data<float>()[2], -0.75f);
  // A slope that would enlarge X is rejected.
  EXPECT_THROW(
      OpTest("PRelu").inputs({f32({2}, {1, 2}), f32({3, 2}, std::vector<float>(6))}).run_ref(),
      Error);
}

TEST(Activation, ClipAttributesAndInputs) {
  Tensor x = f32({5}, {-2, -0.5f, 0, 0.5f, 2});
  // Opset 6: attributes.
  Tensor out =
      OpTest("Clip").inputs({x}).attr("min", -1.0f).attr("max", 1.0f).opset(6).run_ref()[0];
  EXPECT_EQ(out.data<float>()[0], -1.0f);
  EXPECT_EQ(out.data<float>()[4], 1.0f);
  // Opset 13: inputs; only max given.
  out = OpTest("Clip").inputs({x, Tensor(), f32({}, {0.2f})}).opset(13).run_ref()[0];
  EXPECT_LT(max_abs_diff(out, f32({5}, {-2, -0.5f, 0, 0.2f, 0.2f})), 1e-7);
  // No bounds: unchanged, including infinities.
  const float inf = std::numeric_limits<float>::infinity();
  out = OpTest("Clip").inputs({f32({2}, {-inf, inf})}).opset(13).run_ref()[0];
  EXPECT_EQ(out.data<float>()[0], -inf);
  // Integers.
  Tensor i = Tensor::from_vector(DataType::kInt64, {3}, std::vector<int64_t>{-9, 3, 9});
  Tensor lo = Tensor::from_vector(DataType::kInt64, {}, std::vector<int64_t>{-5});
  Tensor hi = Tensor::from_vector(DataType::kInt64, {}, std::vector<int64_t>{5});
  Tensor iout = OpTest("Clip").inputs({i, lo, hi}).opset(13).run_ref()[0];
  EXPECT_EQ(iout.data<int64_t>()[0], -5);
  EXPECT_EQ(iout.data<int64_t>()[1], 3);
  EXPECT_EQ(iout.data<int64_t>()[2], 5);
}

TEST(Activation, Errors) {
  Tensor i = Tensor::from_vector(DataType::kInt32, {1}, std::vector<int32_t>{1});
  EXPECT_THROW(OpTest("Sigmoid").input(i).run_ref(), Error);
  EXPECT_THROW(OpTest("Gelu").input(f32({1}, {1})).attr("approximate", "erf").run_ref(), Error);
  // Clip bound of another dtype.
  EXPECT_THROW(OpTest("Clip").inputs({f32({1}, {1}), i}).opset(13).run_ref(), Error);
}

// PRelu before opset 7: a 1-D slope of C = X.shape[1] values is per channel (axis 1).
TEST(Activation, PReluLegacyPerChannelSlope) {
  // X [2,3,2]: x = -(i + 1); slope[c] = 0.1 * (c + 1). y[n][c][l] = slope[c] * x.
  std::vector<float> xv(12), expect(12);
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int l = 0; l < 2; ++l) {
        const int i = (n * 3 + c) * 2 + l;
        xv[i] = -static_cast<float>(i + 1);
        expect[i] = 0.1f * static_cast<float>(c + 1) * xv[i];
      }
  const Tensor slope = f32({3}, {0.1f, 0.2f, 0.3f});
  Tensor out = OpTest("PRelu").inputs({f32({2, 3, 2}, xv), slope}).opset(6).run_ref()[0];
  ASSERT_EQ(out.shape(), (Shape{2, 3, 2}));
  EXPECT_LT(max_abs_diff(out, f32({2, 3, 2}, expect)), 1e-6);
  // Rank 4, positives pass through.
  out = OpTest("PRelu")
            .inputs({f32({1, 3, 1, 2}, {-1, 1, -1, 1, -1, 1}), slope})
            .opset(6)
            .run_ref()[0];
  EXPECT_LT(max_abs_diff(out, f32({1, 3, 1, 2}, {-0.1f, 1, -0.2f, 1, -0.3f, 1})), 1e-7);
  // From opset 7 the slope broadcasts numpy-style: [3] against X [2,3,2] is an error.
  EXPECT_THROW(OpTest("PRelu").inputs({f32({2, 3, 2}, xv), slope}).opset(7).run_ref(), Error);
  // Opset 6 with a slope that is neither per channel nor broadcastable.
  EXPECT_THROW(
      OpTest("PRelu").inputs({f32({2, 3, 2}, xv), f32({4}, {1, 2, 3, 4})}).opset(6).run_ref(),
      Error);
}

}  // namespace
}  // namespace tandem

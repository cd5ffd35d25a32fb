// Normalization family: expected values come from the formulas, evaluated here in double.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_float;
using testing::f32;
using testing::max_abs_diff;
using testing::OpTest;

std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(gen);
  return v;
}

// Normalises each of `groups` contiguous runs of v (biased variance).
std::vector<double> normalize_runs(const std::vector<float>& v, int64_t groups, double eps) {
  const int64_t len = static_cast<int64_t>(v.size()) / groups;
  std::vector<double> out(v.size());
  for (int64_t g = 0; g < groups; ++g) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < len; ++i) mean += v[g * len + i];
    mean /= double(len);
    for (int64_t i = 0; i < len; ++i) var += (v[g * len + i] - mean) * (v[g * len + i] - mean);
    var /= double(len);
    for (int64_t i = 0; i < len; ++i)
      out[g * len + i] = (v[g * len + i] - mean) / std::sqrt(var + eps);
  }
  return out;
}

TEST(BatchNormalization, Inference) {
  // y = scale * (x - mean) / sqrt(var + eps) + B per channel.
  Tensor x = f32({1, 2, 2}, {1, 3, 10, 20});
  Tensor scale = f32({2}, {2, 0.5f}), b = f32({2}, {1, -1}), mean = f32({2}, {2, 15}),
         var = f32({2}, {4, 25});
  for (int opset : {9, 14, 15}) {
    auto y = OpTest("BatchNormalization")
                 .inputs({x, scale, b, mean, var})
                 .attr("epsilon", 0.0f)
                 .opset(opset)
                 .run_ref();
    EXPECT_LT(max_abs_diff(y[0], f32({1, 2, 2}, {0, 2, -1.5f, -0.5f})), 1e-6) << opset;
  }
}

// Training mode (opset >= 14): normalised with the batch's mean and biased variance per channel,
// and the running statistics input * momentum + batch * (1 - momentum) as outputs 1 and 2.
TEST(BatchNormalization, TrainingModeUsesBatchStatistics) {
  // X [2, 2, 2]: channel 0 holds 1, 2, 5, 6 (mean 3.5, variance 4.25), channel 1 holds 3, 4, 7, 8
  // (mean 5.5, variance 4.25).
  Tensor x = f32({2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8});
  Tensor scale = f32({2}, {1, 2}), b = f32({2}, {0, 1});
  Tensor mean = f32({2}, {0, 1}), var = f32({2}, {1, 2});
  auto out = OpTest("BatchNormalization")
                 .inputs({x, scale, b, mean, var})
                 .attr("training_mode", 1)
                 .attr("momentum", 0.8f)
                 .attr("epsilon", 0.0f)
                 .outputs(3)
                 .opset(15)
                 .run_ref();
  const double sd = std::sqrt(4.25);
  std::vector<float> want;
  for (float v : {1, 2, 3, 4, 5, 6, 7, 8}) {
    const int c = (int(v) - 1) / 2 % 2;
    want.push_back(float(c == 0 ? (v - 3.5) / sd : 2 * (v - 5.5) / sd + 1));
  }
  EXPECT_LT(max_abs_diff(out[0], f32({2, 2, 2}, want)), 1e-5);
  EXPECT_LT(max_abs_diff(out[1], f32({2}, {0.8f * 0 + 0.2f * 3.5f, 0.8f * 1 + 0.2f * 5.5f})), 1e-6);
  EXPECT_LT(max_abs_diff(out[2], f32({2}, {0.8f * 1 + 0.2f * 4.25f, 0.8f * 2 + 0.2f * 4.25f})),
            1e-6);
}

// Before opset 14 training mode meant wiring the five statistics outputs: still refused.
TEST(BatchNormalization, TrainingModeBeforeOpset14Unsupported) {
  Tensor x = f32({1, 1, 1}, {1}), one = f32({1}, {1});
  try {
    OpTest("BatchNormalization").inputs({x, one, one, one, one}).outputs(5).opset(9).run_ref();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("before opset 14"), std::string::npos) << e.what();
  }
}

TEST(InstanceNormalization, PerChannel) {
  const auto v = random_values(2 * 3 * 5, 1);
  Tensor x = f32({2, 3, 5}, v);
  Tensor scale = f32({3}, {1, 2, -1}), b = f32({3}, {0, 1, 0.5f});
  auto y = OpTest("InstanceNormalization").inputs({x, scale, b}).attr("epsilon", 1e-3f).run_ref();
  auto norm = normalize_runs(v, 6, 1e-3);
  std::vector<float> want(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const int64_t c = (i / 5) % 3;
    want[i] = float(norm[i] * scale.data<float>()[c] + b.data<float>()[c]);
  }
  EXPECT_LT(max_abs_diff(y[0], f32({2, 3, 5}, want)), 1e-5);
}

TEST(LayerNormalization, AxisWithBroadcastScaleAndStats) {
  const auto v = random_values(2 * 3 * 4, 2);
  Tensor x = f32({2, 3, 4}, v);
  Tensor scale = f32({4}, {1, 2, 3, 4}), b = f32({1, 4}, {0, 0, 1, 1});
  auto y = OpTest("LayerNormalization").inputs({x, scale, b}).attr("axis", -2).outputs(3).run_ref();
  // axis -2: normalise over the last 12 values of each batch item; scale broadcasts over [3, 4].
  auto norm = normalize_runs(v, 2, 1e-5);
  std::vector<float> want(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    want[i] = float(norm[i] * scale.data<float>()[i % 4] + b.data<float>()[i % 4]);
  EXPECT_LT(max_abs_diff(y[0], f32({2, 3, 4}, want)), 1e-5);
  ASSERT_EQ(y[1].shape(), (Shape{2, 1, 1}));
  ASSERT_EQ(y[2].shape(), (Shape{2, 1, 1}));
  double mean0 = 0;
  for (int i = 0; i < 12; ++i) mean0 += v[i];
  EXPECT_NEAR(y[1].data<float>()[0], mean0 / 12, 1e-6);
  // InvStdDev * (x - mean) reproduces the normalised value.
  EXPECT_NEAR((v[0] - y[1].data<float>()[0]) * y[2].data<float>()[0], norm[0], 1e-5);
}

TEST(GroupNormalization, PerGroupAndPerChannelScale) {
  const auto v = random_values(1 * 4 * 3, 3);
  Tensor x = f32({1, 4, 3}, v);
  auto norm = normalize_runs(v, 2, 1e-5);  // 2 groups of 2 channels x 3 = 6 contiguous values
  // Opset 18: scale/bias per group.
  auto y = OpTest("GroupNormalization")
               .inputs({x, f32({2}, {2, 3}), f32({2}, {1, -1})})
               .attr("num_groups", 2)
               .opset(18)
               .run_ref();
  std::vector<float> want(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const int g = int(i / 6);
    want[i] = float(norm[i] * (g ? 3 : 2) + (g ? -1 : 1));
  }
  EXPECT_LT(max_abs_diff(y[0], f32({1, 4, 3}, want)), 1e-5);
  // Per-channel scale/bias (opset 21 layout).
  y = OpTest("GroupNormalization")
          .inputs({x, f32({4}, {1, 2, 3, 4}), f32({4}, {0, 0, 0, 1})})
          .attr("num_groups", 2)
          .opset(18)
          .run_ref();
  for (size_t i = 0; i < v.size(); ++i) {
    const int c = int(i / 3);
    want[i] = float(norm[i] * (c + 1) + (c == 3 ? 1 : 0));
  }
  EXPECT_LT(max_abs_diff(y[0], f32({1, 4, 3}, want)), 1e-5);
}

TEST(LpNormalization, P1AndP2) {
  Tensor x = f32({2, 2}, {3, 4, 0, -2});
  auto y = OpTest("LpNormalization").input(x).attr("axis", 1).run_ref();
  EXPECT_LT(max_abs_diff(y[0], f32({2, 2}, {0.6f, 0.8f, 0, -1})), 1e-6);
  y = OpTest("LpNormalization").input(x).attr("axis", 0).attr("p", 1).run_ref();
  EXPECT_LT(max_abs_diff(y[0], f32({2, 2}, {1, 4.f / 6, 0, -2.f / 6})), 1e-6);
}

TEST(LRN, ChannelWindow) {
  // size 3: channel c sums squares of c-1..c+1.
  Tensor x = f32({1, 3, 1, 1}, {1, 2, 3});
  auto y = OpTest("LRN")
               .input(x)
               .attr("size", 3)
               .attr("alpha", 0.3f)
               .attr("beta", 0.5f)
               .attr("bias", 2.0f)
               .run_ref();
  const double sums[] = {1 + 4, 1 + 4 + 9, 4 + 9};
  std::vector<float> want(3);
  for (int c = 0; c < 3; ++c) want[c] = float((c + 1) / std::pow(2 + 0.3f / 3 * sums[c], 0.5f));
  EXPECT_LT(max_abs_diff(y[0], f32({1, 3, 1, 1}, want)), 1e-6);
}

TEST(MeanVarianceNormalization, DefaultAxes) {
  const auto v = random_values(2 * 2 * 2 * 2, 4);
  Tensor x = f32({2, 2, 2, 2}, v);
  auto y = OpTest("MeanVarianceNormalization").input(x).run_ref();
  // Default axes {0, 2, 3}: statistics per channel over batch and spatial.
  for (int c = 0; c < 2; ++c) {
    std::vector<int> idx;
    for (int n = 0; n < 2; ++n)
      for (int s = 0; s < 4; ++s) idx.push_back((n * 2 + c) * 4 + s);
    double mean = 0, var = 0;
    for (int i : idx) mean += v[i];
    mean /= 8;
    for (int i : idx) var += (v[i] - mean) * (v[i] - mean);
    var /= 8;
    for (int i : idx) EXPECT_NEAR(y[0].data<float>()[i], (v[i] - mean) / std::sqrt(var), 1e-5);
  }
}

TEST(Normalization, Errors) {
  Tensor x = f32({1, 4, 2}, std::vector<float>(8, 1.0f));
  // GroupNormalization: 3 groups do not divide 4 channels.
  EXPECT_THROW(OpTest("GroupNormalization")
                   .inputs({x, f32({3}, {1, 1, 1}), f32({3}, {0, 0, 0})})
                   .attr("num_groups", 3)
                   .opset(18)
                   .run_ref(),
               Error);
  // InstanceNormalization: scale of the wrong size.
  EXPECT_THROW(OpTest("InstanceNormalization")
                   .inputs({x, f32({3}, {1, 1, 1}), f32({4}, {0, 0, 0, 0})})
                   .run_ref(),
               Error);
  // LayerNormalization: axis out of range.
  EXPECT_THROW(OpTest("LayerNormalization").input(x).attr("axis", 3).run_ref(), Error);
  // LRN without size.
  EXPECT_THROW(OpTest("LRN").input(x).run_ref(), Error);
}

}  // namespace
}  // namespace tandem

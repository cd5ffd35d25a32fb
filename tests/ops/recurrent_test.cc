// RNN, GRU, LSTM: one hidden unit and one input feature, so every step's equations can be
// written out here as scalar formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_int;
using testing::attr_string;
using testing::f32;
using testing::max_abs_diff;
using testing::OpTest;
double sig(double x) {
  return 1 / (1 + std::exp(-x));
}

const std::vector<float> kX = {0.5f, -1.0f, 2.0f};  // seq 3, batch 1, input 1

TEST(RNN, ForwardReverseAndBias) {
  // h_t = tanh(0.7 x_t + 0.3 h_{t-1} + 0.1 + 0.2), h_0 = 0.4.
  Tensor x = f32({3, 1, 1}, kX), w = f32({1, 1, 1}, {0.7f}), r = f32({1, 1, 1}, {0.3f});
  Tensor b = f32({1, 2}, {0.1f, 0.2f}), h0 = f32({1, 1, 1}, {0.4f});
  auto run = [&](const char* dir) {
    return OpTest("RNN")
        .inputs({x, w, r, b, Tensor(), h0})
        .attr("hidden_size", 1)
        .attr("direction", dir)
        .outputs(2)
        .run_ref();
  };
  std::vector<float> fwd(3), rev(3);
  double h = 0.4;
  for (int t = 0; t < 3; ++t) fwd[t] = float(h = std::tanh(0.7 * kX[t] + 0.3 * h + 0.3));
  h = 0.4;
  for (int t = 2; t >= 0; --t) rev[t] = float(h = std::tanh(0.7 * kX[t] + 0.3 * h + 0.3));
  auto f = run("forward");
  EXPECT_LT(max_abs_diff(f[0], f32({3, 1, 1, 1}, fwd)), 1e-6);
  EXPECT_LT(max_abs_diff(f[1], f32({1, 1, 1}, {fwd[2]})), 1e-6);
  auto rv = run("reverse");
  EXPECT_LT(max_abs_diff(rv[0], f32({3, 1, 1, 1}, rev)), 1e-6);
  EXPECT_LT(max_abs_diff(rv[1], f32({1, 1, 1}, {rev[0]})), 1e-6);
}

TEST(GRU, LinearBeforeResetBothWays) {
  // Gates z, r, h with W = {0.1, 0.2, 0.3}, R = {0.4, 0.5, 0.6}, no bias, h_0 = 0.
  Tensor x = f32({3, 1, 1}, kX), w = f32({1, 3, 1}, {0.1f, 0.2f, 0.3f});
  Tensor r = f32({1, 3, 1}, {0.4f, 0.5f, 0.6f});
  for (int lbr : {0, 1}) {
    std::vector<float> want(3);
    double h = 0;
    for (int t = 0; t < 3; ++t) {
      double z = sig(0.1 * kX[t] + 0.4 * h), rg = sig(0.2 * kX[t] + 0.5 * h);
      double hh = std::tanh(0.3 * kX[t] + (lbr ? rg * (0.6 * h) : 0.6 * (rg * h)));
      want[t] = float(h = (1 - z) * hh + z * h);
    }
    auto out = OpTest("GRU")
                   .inputs({x, w, r})
                   .attr("hidden_size", 1)
                   .attr("linear_before_reset", attr_int(lbr))
                   .outputs(2)
                   .run_ref();
    EXPECT_LT(max_abs_diff(out[0], f32({3, 1, 1, 1}, want)), 1e-6) << "lbr " << lbr;
  }
}

TEST(LSTM, PeepholesInitialStateAndLayout1) {
  // Gates i, o, f, c: W = {0.1, 0.2, 0.3, 0.4}, R = {0.5, 0.6, 0.7, 0.8}, P = {pi, po, pf}.
  Tensor w = f32({1, 4, 1}, {0.1f, 0.2f, 0.3f, 0.4f}), r = f32({1, 4, 1}, {0.5f, 0.6f, 0.7f, 0.8f});
  Tensor p = f32({1, 3}, {0.05f, 0.15f, 0.25f});
  Tensor h0 = f32({1, 1, 1}, {0.2f}), c0 = f32({1, 1, 1}, {-0.3f});
  std::vector<float> want(3);
  double h = 0.2, c = -0.3;
  for (int t = 0; t < 3; ++t) {
    double i = sig(0.1 * kX[t] + 0.5 * h + 0.05 * c), f = sig(0.3 * kX[t] + 0.7 * h + 0.25 * c);
    double g = std::tanh(0.4 * kX[t] + 0.8 * h);
    c = f * c + i * g;
    double o = sig(0.2 * kX[t] + 0.6 * h + 0.15 * c);
    want[t] = float(h = o * std::tanh(c));
  }
  auto out = OpTest("LSTM")
                 .inputs({f32({3, 1, 1}, kX), w, r, Tensor(), Tensor(), h0, c0, p})
                 .attr("hidden_size", 1)
                 .outputs(3)
                 .run_ref();
  EXPECT_LT(max_abs_diff(out[0], f32({3, 1, 1, 1}, want)), 1e-6);
  EXPECT_LT(max_abs_diff(out[2], f32({1, 1, 1}, {float(c)})), 1e-6);
  // layout 1: X [batch, seq, input], Y [batch, seq, dirs, hidden]; same numbers for batch 1.
  auto l1 = OpTest("LSTM")
                .inputs({f32({1, 3, 1}, kX), w, r, Tensor(), Tensor(), h0, c0, p})
                .attr("hidden_size", 1)
                .attr("layout", 1)
                .outputs(3)
                .opset(14)
                .run_ref();
  EXPECT_LT(max_abs_diff(l1[0], f32({1, 3, 1, 1}, want)), 1e-6);
}

TEST(RNN, SequenceLensAndBidirectional) {
  // Batch 2 with lengths 3 and 1; W = 1, R = 0 so h_t = tanh(x_t) where computed.
  Tensor x = f32({3, 2, 1}, {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f});
  Tensor w = f32({2, 1, 1}, {1, 1}), r = f32({2, 1, 1}, {0, 0});
  Tensor lens = Tensor::from_vector(DataType::kInt32, {2}, std::vector<int32_t>{3, 1});
  auto out = OpTest("RNN")
                 .inputs({x, w, r, Tensor(), lens})
                 .attr("hidden_size", 1)
                 .attr("direction", "bidirectional")
                 .outputs(2)
                 .run_ref();
  auto t = [](float v) { return float(std::tanh(double(v))); };
  // Y [seq, dirs, batch, hidden]; steps beyond a row's length stay 0.
  EXPECT_LT(max_abs_diff(out[0], f32({3, 2, 2, 1}, {t(0.1f), t(0.2f), t(0.1f), t(0.2f), t(0.3f), 0,
                                                    t(0.3f), 0, t(0.5f), 0, t(0.5f), 0})),
            1e-6);
  // Y_h: forward = last valid step, backward = step 0.
  EXPECT_LT(max_abs_diff(out[1], f32({2, 2, 1}, {t(0.5f), t(0.2f), t(0.1f), t(0.2f)})), 1e-6);
}

TEST(RecurrentErrors, BadWeightShapeAndActivation) {
  Tensor x = f32({3, 1, 1}, kX);
  EXPECT_THROW(OpTest("RNN")
                   .inputs({x, f32({1, 2, 1}, {1, 1}), f32({1, 1, 1}, {1})})
                   .attr("hidden_size", 1)
                   .outputs(2)
                   .run_ref(),
               Error);
  Attribute acts;
  acts.kind = Attribute::Kind::kStrings;
  acts.strings = {"Gelu"};
  EXPECT_THROW(OpTest("RNN")
                   .inputs({x, f32({1, 1, 1}, {1}), f32({1, 1, 1}, {1})})
                   .attr("hidden_size", 1)
                   .attr("activations", acts)
                   .outputs(2)
                   .run_ref(),
               Error);
}

}  // namespace
}  // namespace tandem

// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss: expected values written out from the
// definitions (loss = -input[n, target] * weight[target], mean divides by the summed weights).
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
using testing::i64;
using testing::max_abs_diff;
using testing::OpTest;

// input [2, 3] (N=2, C=3), targets 2 and 0.
const std::vector<float> kIn = {0.1f, -0.5f, 1.5f, 2.0f, 0.3f, -1.0f};

TEST(NegativeLogLikelihoodLoss, Reductions) {
  auto none = OpTest("NegativeLogLikelihoodLoss")
                  .inputs({f32({2, 3}, kIn), i64({2}, {2, 0})})
                  .attr("reduction", "none")
                  .run_ref();
  EXPECT_LT(max_abs_diff(none[0], f32({2}, {-1.5f, -2.0f})), 1e-6);
  auto sum = OpTest("NegativeLogLikelihoodLoss")
                 .inputs({f32({2, 3}, kIn), i64({2}, {2, 0})})
                 .attr("reduction", "sum")
                 .run_ref();
  EXPECT_LT(max_abs_diff(sum[0], f32({}, {-3.5f})), 1e-6);
  // Weighted mean: (-1.5 * 0.5 + -2.0 * 2) / (0.5 + 2).
  auto mean = OpTest("NegativeLogLikelihoodLoss")
                  .inputs({f32({2, 3}, kIn), i64({2}, {2, 0}), f32({3}, {2.0f, 1.0f, 0.5f})})
                  .run_ref();
  EXPECT_LT(max_abs_diff(mean[0], f32({}, {(-0.75f - 4.0f) / 2.5f})), 1e-6);
}

TEST(NegativeLogLikelihoodLoss, SpatialWithIgnoreIndex) {
  // input [1, 2, 2] (N=1, C=2, d1=2); the second position is ignored.
  auto out = OpTest("NegativeLogLikelihoodLoss")
                 .inputs({f32({1, 2, 2}, {1.0f, 2.0f, 3.0f, 4.0f}), i64({1, 2}, {1, -1})})
                 .attr("ignore_index", -1)
                 .run_ref();
  EXPECT_LT(max_abs_diff(out[0], f32({}, {-3.0f})), 1e-6);
}

TEST(SoftmaxCrossEntropyLoss, MatchesLogSoftmaxThenNll) {
  auto out = OpTest("SoftmaxCrossEntropyLoss")
                 .inputs({f32({2, 3}, kIn), i64({2}, {2, 0})})
                 .attr("reduction", "none")
                 .outputs(2)
                 .run_ref();
  std::vector<float> logp(6), loss(2);
  for (int n = 0; n < 2; ++n) {
    double s = 0;
    for (int c = 0; c < 3; ++c) s += std::exp(double(kIn[n * 3 + c]));
    for (int c = 0; c < 3; ++c) logp[n * 3 + c] = float(kIn[n * 3 + c] - std::log(s));
  }
  loss[0] = -logp[2];
  loss[1] = -logp[3];
  EXPECT_LT(max_abs_diff(out[0], f32({2}, loss)), 1e-6);
  EXPECT_LT(max_abs_diff(out[1], f32({2, 3}, logp)), 1e-6);
}

TEST(LossErrors, TargetOutOfRangeAndShapeMismatch) {
  EXPECT_THROW(
      OpTest("NegativeLogLikelihoodLoss").inputs({f32({2, 3}, kIn), i64({2}, {3, 0})}).run_ref(),
      Error);
  EXPECT_THROW(
      OpTest("NegativeLogLikelihoodLoss").inputs({f32({2, 3}, kIn), i64({3}, {0, 0, 0})}).run_ref(),
      Error);
}

}  // namespace
}  // namespace tandem

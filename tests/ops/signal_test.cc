// Windows, DFT, STFT, MelWeightMatrix: expected values from the textbook formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
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
using testing::scalar_i64;

TEST(Windows, PeriodicAndSymmetric) {
  // Hann periodic N=4: 0.5 - 0.5 cos(pi n / 2) = 0, 0.5, 1, 0.5.
  auto hann = OpTest("HannWindow").input(scalar_i64(4)).run_ref();
  EXPECT_LT(max_abs_diff(hann[0], f32({4}, {0, 0.5f, 1, 0.5f})), 1e-6);
  // Hamming symmetric N=3: 25/46 - 21/46 cos(pi n) = 4/46, 1, 4/46.
  auto ham = OpTest("HammingWindow").input(scalar_i64(3)).attr("periodic", 0).run_ref();
  EXPECT_LT(max_abs_diff(ham[0], f32({3}, {4.0f / 46, 1, 4.0f / 46})), 1e-6);
  // Blackman periodic N=2: n=1 -> 0.42 + 0.5 + 0.08 = 1.
  auto bl = OpTest("BlackmanWindow").input(scalar_i64(2)).run_ref();
  EXPECT_LT(max_abs_diff(bl[0], f32({2}, {0, 1})), 1e-6);
}

TEST(DFT, RealForwardOnesidedAndInverse) {
  // x = [1, 2, 3, 4]: X = [10, -2+2i, -2, -2-2i].
  auto full = OpTest("DFT").input(f32({1, 4, 1}, {1, 2, 3, 4})).run_ref();
  EXPECT_LT(max_abs_diff(full[0], f32({1, 4, 2}, {10, 0, -2, 2, -2, 0, -2, -2})), 1e-5);
  auto one = OpTest("DFT").input(f32({1, 4, 1}, {1, 2, 3, 4})).attr("onesided", 1).run_ref();
  EXPECT_LT(max_abs_diff(one[0], f32({1, 3, 2}, {10, 0, -2, 2, -2, 0})), 1e-5);
  auto inv = OpTest("DFT")
                 .input(f32({1, 4, 2}, {10, 0, -2, 2, -2, 0, -2, -2}))
                 .attr("inverse", 1)
                 .run_ref();
  EXPECT_LT(max_abs_diff(inv[0], f32({1, 4, 2}, {1, 0, 2, 0, 3, 0, 4, 0})), 1e-5);
}

TEST(STFT, FramesOfAConstantSignal) {
  // Signal of 6 ones, frame 4, step 2: 2 frames, each DFT = [4, 0, 0] (onesided).
  auto out = OpTest("STFT")
                 .inputs({f32({1, 6, 1}, std::vector<float>(6, 1)), scalar_i64(2), Tensor(),
                          scalar_i64(4)})
                 .run_ref();
  EXPECT_LT(max_abs_diff(out[0], f32({1, 2, 3, 2}, {4, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0})), 1e-5);
}

TEST(MelWeightMatrix, ShapeAndTriangles) {
  auto out =
      OpTest("MelWeightMatrix")
          .inputs({scalar_i64(4), scalar_i64(16), scalar_i64(8000), f32({}, {0}), f32({}, {4000})})
          .run_ref();
  ASSERT_EQ(out[0].shape(), (Shape{9, 4}));
  // Every filter has a peak of 1 and values within [0, 1].
  for (int m = 0; m < 4; ++m) {
    float peak = 0;
    for (int k = 0; k < 9; ++k) {
      float v = out[0].data<float>()[k * 4 + m];
      EXPECT_GE(v, 0);
      EXPECT_LE(v, 1);
      peak = std::max(peak, v);
    }
    EXPECT_EQ(peak, 1);
  }
}

TEST(SignalErrors, BadInputs) {
  EXPECT_THROW(OpTest("DFT").input(f32({1, 4, 3}, std::vector<float>(12))).run_ref(), Error);
  EXPECT_THROW(OpTest("STFT")
                   .inputs({f32({1, 3, 1}, {1, 2, 3}), scalar_i64(1), Tensor(), scalar_i64(4)})
                   .run_ref(),
               Error);
}

}  // namespace
}  // namespace tandem

// simd.h's tanh_rational against double-precision std::tanh: relative error on a dense grid
// over [-10, 10] (past the clamp at 7.9 too), tiny and huge inputs, infinities and NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "backends/cpu/simd.h"

#pragma GCC diagnostic ignored "-Wpsabi"

namespace tandem {
namespace {

using cpu::simd::splat;
using cpu::simd::tanh_rational;
using cpu::simd::vfloat4;

float rational(float x) {
  return tanh_rational(splat<vfloat4>(x))[0];
}

TEST(SimdMath, TanhRationalIsWithinAFewUlp) {
  double worst = 0;
  float worst_at = 0;
  for (int i = -400000; i <= 400000; ++i) {
    const float x = static_cast<float>(i) * 2.5e-5f;
    const double want = std::tanh(static_cast<double>(x));
    const double err = std::abs(rational(x) - want) / std::max(std::abs(want), 1e-30);
    if (err > worst) {
      worst = err;
      worst_at = x;
    }
  }
  EXPECT_LE(worst, 5e-7) << "at " << worst_at;
  for (float x : {1e-30f, -1e-10f, 3e-5f, -0.01f}) {
    // Relative accuracy kept near 0.
    EXPECT_NEAR(rational(x) / std::tanh(static_cast<double>(x)), 1.0, 5e-7) << x;
  }
  EXPECT_EQ(rational(0.0f), 0.0f);
  EXPECT_EQ(rational(1e30f), 1.0f);
  EXPECT_EQ(rational(-1e30f), -1.0f);
  EXPECT_EQ(rational(std::numeric_limits<float>::infinity()), 1.0f);
  EXPECT_EQ(rational(-std::numeric_limits<float>::infinity()), -1.0f);
  EXPECT_TRUE(std::isnan(rational(std::numeric_limits<float>::quiet_NaN())));
}

}  // namespace
}  // namespace tandem

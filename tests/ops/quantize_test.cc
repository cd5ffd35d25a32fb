// Quantize family: expected values from q = saturate(round_half_even(x / s) + zp) and
// x = (q - zp) * s, worked out by hand.
#include <gtest/gtest.h>

#include <vector>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::f32;
using testing::i32;
using testing::max_abs_diff;
using testing::OpTest;
using testing::s8;
using testing::u8;

TEST(QuantizeLinear, RoundsHalfToEvenAndSaturates) {
  // x / 2 = 0.5, 1.5, 2.5, -1.5, 300, -300 -> 0, 2, 2, -2 (+10), saturated.
  auto out = OpTest("QuantizeLinear")
                 .inputs({f32({6}, {1, 3, 5, -3, 600, -600}), f32({}, {2}), u8({}, {10})})
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], u8({6}, {10, 12, 12, 8, 255, 0})), 0);
  auto s = OpTest("QuantizeLinear")
               .inputs({f32({3}, {1, 3, -600}), f32({}, {2}), s8({}, {0})})
               .run_ref();
  EXPECT_EQ(max_abs_diff(s[0], s8({3}, {0, 2, -128})), 0);
}

TEST(QuantizeLinear, PerAxis) {
  // [2, 2] with axis 0 scales {1, 10}: rows use different scales and zero points.
  auto out = OpTest("QuantizeLinear")
                 .inputs({f32({2, 2}, {1, 2, 30, 40}), f32({2}, {1, 10}), u8({2}, {0, 100})})
                 .attr("axis", 0)
                 .opset(13)
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], u8({2, 2}, {1, 2, 103, 104})), 0);
}

TEST(DequantizeLinear, PerTensorAndInt32) {
  auto out = OpTest("DequantizeLinear")
                 .inputs({u8({3}, {0, 10, 255}), f32({}, {0.5f}), u8({}, {10})})
                 .run_ref();
  EXPECT_LT(max_abs_diff(out[0], f32({3}, {-5, 0, 122.5f})), 1e-6);
  auto i = OpTest("DequantizeLinear").inputs({i32({2}, {-4, 6}), f32({}, {0.25f})}).run_ref();
  EXPECT_LT(max_abs_diff(i[0], f32({2}, {-1, 1.5f})), 1e-6);
}

TEST(DynamicQuantizeLinear, ScaleAndZeroPoint) {
  // range [-1, 2.06]: scale = 3.06 / 255 = 0.012, zp = round(1 / 0.012) = 83.
  auto out =
      OpTest("DynamicQuantizeLinear").inputs({f32({3}, {-1.0f, 0.0f, 2.06f})}).outputs(3).run_ref();
  EXPECT_NEAR(out[1].data<float>()[0], 0.012f, 1e-7);
  EXPECT_EQ(out[2].data<uint8_t>()[0], 83);
  EXPECT_EQ(max_abs_diff(out[0], u8({3}, {0, 83, 255})), 0);
}

TEST(MatMulInteger, ZeroPoints) {
  // (A - 1) @ (B - 2) with A [2,2], B [2,1].
  auto out = OpTest("MatMulInteger")
                 .inputs({u8({2, 2}, {1, 2, 3, 4}), u8({2, 1}, {3, 5}), u8({}, {1}), u8({}, {2})})
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], i32({2, 1}, {0 * 1 + 1 * 3, 2 * 1 + 3 * 3})), 0);
}

TEST(QLinearMatMul, Requantizes) {
  // real A = [[1, 2]] * 0.5, real B = [[2], [4]] * 0.25 -> 0.5*0.5 + 1*1 = 1.25; / 0.25 = 5 (+3).
  auto out = OpTest("QLinearMatMul")
                 .inputs({u8({1, 2}, {1, 2}), f32({}, {0.5f}), u8({}, {0}), u8({2, 1}, {2, 4}),
                          f32({}, {0.25f}), u8({}, {0}), f32({}, {0.25f}), u8({}, {3})})
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], u8({1, 1}, {8})), 0);
}

TEST(ConvInteger, OneByOneKernel) {
  // 1x1 conv: y = (x - 1) * (w - 0) per pixel.
  auto out = OpTest("ConvInteger")
                 .inputs({u8({1, 1, 2, 2}, {1, 2, 3, 4}), u8({1, 1, 1, 1}, {3}), u8({}, {1})})
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], i32({1, 1, 2, 2}, {0, 3, 6, 9})), 0);
}

TEST(QLinearConv, WithBias) {
  // real x = [2, 4] * 1, w = 2 * 0.5 = 1, bias 4 * (1 * 0.5) = 2 -> y = 4, 6; / 2 = 2, 3.
  auto out =
      OpTest("QLinearConv")
          .inputs({u8({1, 1, 1, 2}, {2, 4}), f32({}, {1}), u8({}, {0}), u8({1, 1, 1, 1}, {2}),
                   f32({1}, {0.5f}), u8({1}, {0}), f32({}, {2}), u8({}, {0}), i32({1}, {4})})
          .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], u8({1, 1, 1, 2}, {2, 3})), 0);
}

TEST(QuantizeErrors, BadScaleShapeAndDtype) {
  EXPECT_THROW(OpTest("QuantizeLinear")
                   .inputs({f32({2, 2}, {1, 2, 3, 4}), f32({3}, {1, 1, 1})})
                   .attr("axis", 0)
                   .opset(13)
                   .run_ref(),
               Error);
  EXPECT_THROW(OpTest("DequantizeLinear").inputs({f32({1}, {1}), f32({}, {1})}).run_ref(), Error);
}

}  // namespace
}  // namespace tandem

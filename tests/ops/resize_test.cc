// Resize family: expected values are worked out by hand from the ONNX coordinate transforms and
// interpolation kernels.
#include <gtest/gtest.h>

#include <cmath>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_float;
using testing::attr_floats;
using testing::attr_int;
using testing::attr_string;
using testing::f32;
using testing::i64;
using testing::max_abs_diff;
using testing::OpTest;
const Tensor kNone;  // an omitted optional input

TEST(Resize, NearestUpsampleScales) {
  Tensor x = f32({1, 1, 2, 2}, {1, 2, 3, 4});
  auto y = OpTest("Resize")
               .inputs({x, kNone, f32({4}, {1, 1, 2, 3})})
               .attr("mode", "nearest")
               .opset(13)
               .run_ref();
  EXPECT_EQ(max_abs_diff(y[0], f32({1, 1, 4, 6}, {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2,
                                                  3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4})),
            0.0);
}

TEST(Resize, NearestModes) {
  // asymmetric, scale 2 on 3 values: x_orig = i / 2 = 0, .5, 1, 1.5, 2, 2.5.
  Tensor x = f32({3}, {10, 20, 30});
  auto run = [&](const char* nearest_mode) {
    return OpTest("Resize")
        .inputs({x, kNone, f32({1}, {2})})
        .attr("mode", "nearest")
        .attr("coordinate_transformation_mode", "asymmetric")
        .attr("nearest_mode", nearest_mode)
        .opset(13)
        .run_ref()[0];
  };
  EXPECT_EQ(max_abs_diff(run("floor"), f32({6}, {10, 10, 20, 20, 30, 30})), 0.0);
  EXPECT_EQ(max_abs_diff(run("ceil"), f32({6}, {10, 20, 20, 30, 30, 30})), 0.0);  // clamped
  EXPECT_EQ(max_abs_diff(run("round_prefer_floor"), f32({6}, {10, 10, 20, 20, 30, 30})), 0.0);
  EXPECT_EQ(max_abs_diff(run("round_prefer_ceil"), f32({6}, {10, 20, 20, 30, 30, 30})), 0.0);
}

TEST(Resize, NearestInt64IsExact) {
  const int64_t big = (int64_t(1) << 60) + 1;
  Tensor x = i64({2}, {big, -big});
  auto y = OpTest("Resize")
               .inputs({x, kNone, kNone, i64({1}, {4})})
               .attr("mode", "nearest")
               .opset(13)
               .run_ref();
  EXPECT_EQ(max_abs_diff(y[0], i64({4}, {big, big, -big, -big})), 0.0);
}

TEST(Resize, LinearCoordinateModes) {
  Tensor x = f32({2}, {0, 4});
  // half_pixel, scale 2: x_orig = -0.25, 0.25, 0.75, 1.25, clamped to the ends.
  auto y =
      OpTest("Resize").inputs({x, kNone, f32({1}, {2})}).attr("mode", "linear").opset(13).run_ref();
  EXPECT_LT(max_abs_diff(y[0], f32({4}, {0, 1, 3, 4})), 1e-6);
  // align_corners, 3 outputs: 0, 2, 4.
  y = OpTest("Resize")
          .inputs({x, kNone, kNone, i64({1}, {3})})
          .attr("mode", "linear")
          .attr("coordinate_transformation_mode", "align_corners")
          .opset(13)
          .run_ref();
  EXPECT_LT(max_abs_diff(y[0], f32({3}, {0, 2, 4})), 1e-6);
  // asymmetric, scale 2: 0, 2, 4, 4.
  y = OpTest("Resize")
          .inputs({x, kNone, f32({1}, {2})})
          .attr("mode", "linear")
          .attr("coordinate_transformation_mode", "asymmetric")
          .opset(13)
          .run_ref();
  EXPECT_LT(max_abs_diff(y[0], f32({4}, {0, 2, 4, 4})), 1e-6);
}

TEST(Resize, CubicWithAndWithoutExcludeOutside) {
  const double a = -0.75;
  auto cubic = [&](double s) {
    s = std::abs(s);
    if (s <= 1) return (a + 2) * s * s * s - (a + 3) * s * s + 1;
    if (s < 2) return a * s * s * s - 5 * a * s * s + 8 * a * s - 4 * a;
    return 0.0;
  };
  const double w0 = cubic(1.5), w1 = cubic(0.5);  // weights at distance 1.5 and 0.5
  Tensor x = f32({4}, {0, 1, 2, 3});
  std::map<std::string, Attribute> attrs{
      {"mode", attr_string("cubic")},
      {"coordinate_transformation_mode", attr_string("asymmetric")}};
  auto y = OpTest("Resize").inputs({x, kNone, f32({1}, {2})}).attrs(attrs).opset(13).run_ref();
  // Output 1 sits at 0.5: taps -1 (clamped to 0), 0, 1, 2.
  const double at_half = w0 * 0 + w1 * 0 + w1 * 1 + w0 * 2;
  // Output 3 sits at 1.5: taps 0..3, symmetric weights reproduce the line.
  EXPECT_NEAR(y[0].data<float>()[0], 0, 1e-6);
  EXPECT_NEAR(y[0].data<float>()[1], at_half, 1e-6);
  EXPECT_NEAR(y[0].data<float>()[2], 1, 1e-6);
  EXPECT_NEAR(y[0].data<float>()[3], 1.5, 1e-6);
  attrs["exclude_outside"] = attr_int(1);
  y = OpTest("Resize").inputs({x, kNone, f32({1}, {2})}).attrs(attrs).opset(13).run_ref();
  EXPECT_NEAR(y[0].data<float>()[1], (w1 * 0 + w1 * 1 + w0 * 2) / (1 - w0), 1e-6);
}

TEST(Resize, TfCropAndResizeExtrapolates) {
  Tensor x = f32({5}, {0, 10, 20, 30, 40});
  // roi [0.5, 1.5] over 4 intervals: x_orig = 2, 4, 6 -> 20, 40, outside.
  auto y = OpTest("Resize")
               .inputs({x, f32({2}, {0.5f, 1.5f}), kNone, i64({1}, {3})})
               .attr("mode", "linear")
               .attr("coordinate_transformation_mode", "tf_crop_and_resize")
               .attr("extrapolation_value", 7.0f)
               .opset(13)
               .run_ref();
  EXPECT_LT(max_abs_diff(y[0], f32({3}, {20, 40, 7})), 1e-5);
}

TEST(Resize, Opset18AxesAndAspectRatio) {
  Tensor x = f32({1, 1, 2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  // not_larger: scale = min(4/2, 4/4) = 1 on both axes -> unchanged.
  auto y = OpTest("Resize")
               .inputs({x, kNone, kNone, i64({2}, {4, 4})})
               .attr("axes", {2, 3})
               .attr("keep_aspect_ratio_policy", "not_larger")
               .opset(18)
               .run_ref();
  EXPECT_EQ(max_abs_diff(y[0], x), 0.0);
  // not_smaller: scale 2 -> [1, 1, 4, 8].
  y = OpTest("Resize")
          .inputs({x, kNone, kNone, i64({2}, {4, 4})})
          .attr("axes", {2, 3})
          .attr("keep_aspect_ratio_policy", "not_smaller")
          .opset(18)
          .run_ref();
  EXPECT_EQ(y[0].shape(), (Shape{1, 1, 4, 8}));
  // Antialiased linear downscale by 2 (half_pixel): a triangle of width 4 input samples,
  // x_orig = 0.5 -> taps -1..2 with weights (0.25, 0.75, 0.75, 0.25)/2, the -1 tap clamped to 0.
  Tensor row = f32({4}, {0, 4, 8, 12});
  y = OpTest("Resize")
          .inputs({row, kNone, f32({1}, {0.5f})})
          .attr("mode", "linear")
          .attr("antialias", 1)
          .opset(18)
          .run_ref();
  EXPECT_NEAR(y[0].data<float>()[0], (0.25 * 0 + 0.75 * 0 + 0.75 * 4 + 0.25 * 8) / 2, 1e-5);
}

TEST(Upsample, Opset7AttributeAndOpset9Input) {
  Tensor x = f32({1, 2}, {1, 2});
  auto y7 = OpTest("Upsample").inputs({x}).attr("scales", {2.0f, 2.0f}).opset(7).run_ref();
  auto y9 = OpTest("Upsample").inputs({x, f32({2}, {2, 2})}).opset(9).run_ref();
  Tensor want = f32({2, 4}, {1, 1, 2, 2, 1, 1, 2, 2});
  EXPECT_EQ(max_abs_diff(y7[0], want), 0.0);
  EXPECT_EQ(max_abs_diff(y9[0], want), 0.0);
  // linear, asymmetric: 1, 1.5, 2, 2 along the last axis.
  auto lin =
      OpTest("Upsample").inputs({x, f32({2}, {1, 2})}).attr("mode", "linear").opset(9).run_ref();
  EXPECT_LT(max_abs_diff(lin[0], f32({1, 4}, {1, 1.5f, 2, 2})), 1e-6);
}

TEST(Resize, Errors) {
  Tensor x = f32({1, 1, 2, 2}, {1, 2, 3, 4});
  // Both scales and sizes.
  EXPECT_THROW(OpTest("Resize")
                   .inputs({x, kNone, f32({4}, {1, 1, 2, 2}), i64({4}, {1, 1, 4, 4})})
                   .opset(13)
                   .run_ref(),
               Error);
  // Neither.
  EXPECT_THROW(OpTest("Resize").inputs({x}).opset(13).run_ref(), Error);
  // Wrong number of scales.
  EXPECT_THROW(OpTest("Resize").inputs({x, kNone, f32({2}, {2, 2})}).opset(13).run_ref(), Error);
  // Unknown mode.
  try {
    OpTest("Resize")
        .inputs({x, kNone, f32({4}, {1, 1, 2, 2})})
        .attr("mode", "lanczos")
        .opset(13)
        .run_ref();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
}

}  // namespace
}  // namespace tandem

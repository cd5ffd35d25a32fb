// NonMaxSuppression, RoiAlign, GridSample: small cases worked out by hand.
#include <gtest/gtest.h>

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

TEST(NonMaxSuppression, SuppressesOverlapsPerClass) {
  // Boxes 0 and 1 overlap with IoU 0.9 / 1.1 ≈ 0.82; box 2 is apart.
  Tensor boxes = f32({1, 3, 4}, {0, 0, 1, 1, 0.1f, 0, 1.1f, 1, 5, 5, 6, 6});
  Tensor scores = f32({1, 1, 3}, {0.8f, 0.9f, 0.3f});
  auto out = OpTest("NonMaxSuppression")
                 .inputs({boxes, scores, i64({1}, {3}), f32({1}, {0.5f}), f32({1}, {0.0f})})
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], i64({2, 3}, {0, 0, 1, 0, 0, 2})), 0);
  // A higher IoU threshold keeps both; max 1 per class keeps only the best.
  auto keep = OpTest("NonMaxSuppression")
                  .inputs({boxes, scores, i64({1}, {3}), f32({1}, {0.85f})})
                  .run_ref();
  EXPECT_EQ(keep[0].shape(), (Shape{3, 3}));
  auto one = OpTest("NonMaxSuppression").inputs({boxes, scores, i64({1}, {1})}).run_ref();
  EXPECT_EQ(max_abs_diff(one[0], i64({1, 3}, {0, 0, 1})), 0);
}

TEST(RoiAlign, AverageOfBilinearSamples) {
  // 4x4 image x[y][x] = x + 4y (linear, so bilinear samples are exact): the roi [0,0]-[2,2] in
  // output_half_pixel mode (opset 10) averages 4 samples at 0.5/1.5 -> mean of x+4y = 1 + 4 = 5.
  std::vector<float> img(16);
  for (int i = 0; i < 16; ++i) img[i] = float(i % 4 + 4 * (i / 4));
  auto out = OpTest("RoiAlign")
                 .inputs({f32({1, 1, 4, 4}, img), f32({1, 4}, {0, 0, 2, 2}), i64({1}, {0})})
                 .attr("sampling_ratio", 2)
                 .opset(10)
                 .run_ref();
  EXPECT_LT(max_abs_diff(out[0], f32({1, 1, 1, 1}, {5})), 1e-5);
  // half_pixel (opset 16) shifts the roi by -0.5: samples at 0/1 -> mean 0.5 + 4 * 0.5 = 2.5.
  auto hp = OpTest("RoiAlign")
                .inputs({f32({1, 1, 4, 4}, img), f32({1, 4}, {0, 0, 2, 2}), i64({1}, {0})})
                .attr("sampling_ratio", 2)
                .opset(16)
                .run_ref();
  EXPECT_LT(max_abs_diff(hp[0], f32({1, 1, 1, 1}, {2.5f})), 1e-5);
}

TEST(GridSample, BilinearNearestAndPadding) {
  // 2x2 image [[1, 2], [3, 4]]; align_corners: -1/1 are pixel centres.
  Tensor x = f32({1, 1, 2, 2}, {1, 2, 3, 4});
  Tensor grid = f32({1, 1, 3, 2}, {0, 0, -1, -1, 1, -1});
  auto bil = OpTest("GridSample").inputs({x, grid}).attr("align_corners", 1).opset(16).run_ref();
  EXPECT_LT(max_abs_diff(bil[0], f32({1, 1, 1, 3}, {2.5f, 1, 2})), 1e-6);
  // Without align_corners -1 is the image edge: (-0.5, -0.5) blends pixel 1 with zero padding
  // (weight 1/4), border padding repeats it.
  Tensor corner = f32({1, 1, 1, 2}, {-1, -1});
  auto zeros = OpTest("GridSample").inputs({x, corner}).opset(16).run_ref();
  EXPECT_LT(max_abs_diff(zeros[0], f32({1, 1, 1, 1}, {0.25f})), 1e-6);
  auto border =
      OpTest("GridSample").inputs({x, corner}).attr("padding_mode", "border").opset(16).run_ref();
  EXPECT_LT(max_abs_diff(border[0], f32({1, 1, 1, 1}, {1})), 1e-6);
  auto near = OpTest("GridSample")
                  .inputs({x, f32({1, 1, 1, 2}, {0.6f, 0.6f})})
                  .attr("mode", "nearest")
                  .opset(16)
                  .run_ref();
  EXPECT_LT(max_abs_diff(near[0], f32({1, 1, 1, 1}, {4})), 1e-6);
}

TEST(DetectionErrors, BadShapesAndModes) {
  EXPECT_THROW(OpTest("NonMaxSuppression")
                   .inputs({f32({1, 2, 4}, std::vector<float>(8)), f32({1, 1, 3}, {1, 2, 3})})
                   .run_ref(),
               Error);
  EXPECT_THROW(OpTest("GridSample")
                   .inputs({f32({1, 1, 2, 2}, {1, 2, 3, 4}), f32({1, 1, 1, 2}, {0, 0})})
                   .attr("mode", "cubic")
                   .opset(16)
                   .run_ref(),
               Error);
}

}  // namespace
}  // namespace tandem

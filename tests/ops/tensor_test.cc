// Tensor family (data movement and indexing): expected values by hand or from index formulas
// written here.
#include "tandem/tensor.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/half.h"
#include "op_test_util.h"
#include "tandem/status.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_float;
using testing::f32;
using testing::i32;
using testing::i64;
using testing::max_abs_diff;
using testing::OpTest;
Tensor iota_f32(Shape s) {
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  return f32(s, v);
}

TEST(Transpose, PermAndDefault) {
  auto out = OpTest("Transpose").input(iota_f32({2, 3, 4})).attr("perm", {1, 2, 0}).run_ref();
  ASSERT_EQ(out[0].shape(), (Shape{3, 4, 2}));
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 4; ++b)
      for (int c = 0; c < 2; ++c)
        EXPECT_EQ(out[0].data<float>()[(a * 4 + b) * 2 + c], c * 12 + a * 4 + b);
  auto rev = OpTest("Transpose").input(iota_f32({2, 3})).run_ref();
  EXPECT_EQ(max_abs_diff(rev[0], f32({3, 2}, {0, 3, 1, 4, 2, 5})), 0);
  // Innermost axis kept: rows are copied whole.
  auto keep = OpTest("Transpose").input(iota_f32({2, 3, 2})).attr("perm", {1, 0, 2}).run_ref();
  EXPECT_EQ(max_abs_diff(keep[0], f32({3, 2, 2}, {0, 1, 6, 7, 2, 3, 8, 9, 4, 5, 10, 11})), 0);
  EXPECT_THROW(OpTest("Transpose").input(iota_f32({2, 3})).attr("perm", {0, 0}).run_ref(), Error);
}

TEST(Transpose, BoolAndFloat16AreCopiedAsBytes) {
  auto b = OpTest("Transpose")
               .input(Tensor::from_vector<uint8_t>(DataType::kBool, {2, 2}, {1, 0, 0, 0}))
               .run_ref();
  EXPECT_EQ(b[0].dtype(), DataType::kBool);
  EXPECT_EQ(b[0].data<uint8_t>()[0], 1);
  std::vector<uint16_t> h = {float_to_half(1), float_to_half(2), float_to_half(3),
                             float_to_half(4)};
  auto t = OpTest("Transpose").input(Tensor::from_vector(DataType::kFloat16, {2, 2}, h)).run_ref();
  EXPECT_EQ(half_to_float(t[0].data<uint16_t>()[1]), 3.0f);
}

TEST(Concat, AxesAndErrors) {
  auto out = OpTest("Concat")
                 .inputs({f32({2, 1}, {1, 2}), f32({2, 2}, {3, 4, 5, 6})})
                 .attr("axis", -1)
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({2, 3}, {1, 3, 4, 2, 5, 6})), 0);
  auto rows = OpTest("Concat")
                  .inputs({f32({1, 2}, {1, 2}), f32({0, 2}, {}), f32({1, 2}, {3, 4})})
                  .attr("axis", 0)
                  .run_ref();
  EXPECT_EQ(max_abs_diff(rows[0], f32({2, 2}, {1, 2, 3, 4})), 0);
  EXPECT_THROW(OpTest("Concat")
                   .inputs({f32({2, 1}, {1, 2}), f32({3, 1}, {1, 2, 3})})
                   .attr("axis", 1)
                   .run_ref(),
               Error);
}

TEST(Split, EqualAttributeInputAndNumOutputs) {
  Tensor x = iota_f32({2, 5});
  auto eq = OpTest("Split").inputs({iota_f32({4})}).outputs(2).run_ref();
  EXPECT_EQ(max_abs_diff(eq[1], f32({2}, {2, 3})), 0);
  auto attr = OpTest("Split")
                  .inputs({x})
                  .attr("axis", 1)
                  .attr("split", {2, 3})
                  .outputs(2)
                  .opset(11)
                  .run_ref();
  EXPECT_EQ(max_abs_diff(attr[0], f32({2, 2}, {0, 1, 5, 6})), 0);
  EXPECT_EQ(max_abs_diff(attr[1], f32({2, 3}, {2, 3, 4, 7, 8, 9})), 0);
  auto in =
      OpTest("Split").inputs({x, i64({2}, {4, 1})}).attr("axis", -1).outputs(2).opset(13).run_ref();
  EXPECT_EQ(max_abs_diff(in[1], f32({2, 1}, {4, 9})), 0);
  // num_outputs=2 over 5: chunks of 3 and 2.
  auto n = OpTest("Split")
               .inputs({x})
               .attr("axis", 1)
               .attr("num_outputs", 2)
               .outputs(2)
               .opset(18)
               .run_ref();
  EXPECT_EQ(n[0].shape(), (Shape{2, 3}));
  EXPECT_EQ(max_abs_diff(n[1], f32({2, 2}, {3, 4, 8, 9})), 0);
  EXPECT_THROW(
      OpTest("Split").inputs({x, i64({2}, {1, 1})}).attr("axis", 1).outputs(2).opset(13).run_ref(),
      Error);
}

TEST(Slice, StepsClampingAndAttributes) {
  Tensor x = iota_f32({3, 4});
  // rows 2..0 step -1 (end -100 clamps to before the start), cols 1..end step 2.
  auto out = OpTest("Slice")
                 .inputs({x, i64({2}, {-1, 1}), i64({2}, {-100, 1000}), i64({2}, {0, 1}),
                          i64({2}, {-1, 2})})
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({3, 2}, {9, 11, 5, 7, 1, 3})), 0);
  auto empty = OpTest("Slice").inputs({x, i64({1}, {5}), i64({1}, {10})}).run_ref();
  EXPECT_EQ(empty[0].shape(), (Shape{0, 4}));
  auto old = OpTest("Slice")
                 .inputs({x})
                 .attr("starts", {1})
                 .attr("ends", {3})
                 .attr("axes", {1})
                 .opset(9)
                 .run_ref();
  EXPECT_EQ(max_abs_diff(old[0], f32({3, 2}, {1, 2, 5, 6, 9, 10})), 0);
  EXPECT_THROW(OpTest("Slice")
                   .inputs({x, i64({1}, {0}), i64({1}, {1}), i64({1}, {0}), i64({1}, {0})})
                   .run_ref(),
               Error);
}

TEST(Gather, AxisNegativeIndicesAndOutOfRange) {
  Tensor x = iota_f32({2, 3});
  auto out = OpTest("Gather").inputs({x, i64({2, 1}, {-1, 0})}).attr("axis", 1).run_ref();
  EXPECT_EQ(out[0].shape(), (Shape{2, 2, 1}));
  EXPECT_EQ(max_abs_diff(out[0], f32({2, 2, 1}, {2, 0, 5, 3})), 0);
  auto scalar = OpTest("Gather").inputs({x, i32({}, {1})}).run_ref();
  EXPECT_EQ(max_abs_diff(scalar[0], f32({3}, {3, 4, 5})), 0);
  EXPECT_THROW(OpTest("Gather").inputs({x, i64({1}, {2})}).run_ref(), Error);
  EXPECT_THROW(OpTest("Gather").inputs({x, i64({1}, {-4})}).attr("axis", 1).run_ref(), Error);
}

TEST(GatherElementsAndND, Basics) {
  Tensor x = iota_f32({2, 2});
  auto ge =
      OpTest("GatherElements").inputs({x, i64({2, 2}, {1, 0, -1, 1})}).attr("axis", 1).run_ref();
  EXPECT_EQ(max_abs_diff(ge[0], f32({2, 2}, {1, 0, 3, 3})), 0);
  EXPECT_THROW(OpTest("GatherElements").inputs({x, i64({1, 1}, {2})}).run_ref(), Error);
  auto nd = OpTest("GatherND").inputs({x, i64({2, 2}, {0, 1, 1, 0})}).run_ref();
  EXPECT_EQ(max_abs_diff(nd[0], f32({2}, {1, 2})), 0);
  auto rows = OpTest("GatherND").inputs({x, i64({2, 1}, {1, 0})}).run_ref();
  EXPECT_EQ(max_abs_diff(rows[0], f32({2, 2}, {2, 3, 0, 1})), 0);
  // batch_dims=1: batch b picks x[b][idx[b]].
  auto b = OpTest("GatherND")
               .inputs({iota_f32({2, 3}), i64({2, 1}, {2, 0})})
               .attr("batch_dims", 1)
               .run_ref();
  EXPECT_EQ(max_abs_diff(b[0], f32({2}, {2, 3})), 0);
}

TEST(Scatter, ElementsAndND) {
  Tensor x = f32({2, 3}, {1, 1, 1, 1, 1, 1});
  auto none = OpTest("ScatterElements")
                  .inputs({x, i64({1, 2}, {2, 0}), f32({1, 2}, {5, 6})})
                  .attr("axis", 1)
                  .opset(16)
                  .run_ref();
  EXPECT_EQ(max_abs_diff(none[0], f32({2, 3}, {6, 1, 5, 1, 1, 1})), 0);
  auto add = OpTest("ScatterElements")
                 .inputs({x, i64({1, 2}, {1, 1}), f32({1, 2}, {5, 6})})
                 .attr("axis", 1)
                 .attr("reduction", "add")
                 .opset(16)
                 .run_ref();
  EXPECT_EQ(max_abs_diff(add[0], f32({2, 3}, {1, 12, 1, 1, 1, 1})), 0);
  auto nd = OpTest("ScatterND")
                .inputs({x, i64({1, 1}, {1}), f32({1, 3}, {2, 3, 4})})
                .attr("reduction", "mul")
                .opset(16)
                .run_ref();
  EXPECT_EQ(max_abs_diff(nd[0], f32({2, 3}, {1, 1, 1, 2, 3, 4})), 0);
  EXPECT_THROW(OpTest("ScatterND").inputs({x, i64({1, 2}, {0, 3}), f32({1}, {2})}).run_ref(),
               Error);
}

TEST(Tile, Repeats) {
  auto out = OpTest("Tile").inputs({f32({2, 2}, {1, 2, 3, 4}), i64({2}, {2, 2})}).run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({4, 4}, {1, 2, 1, 2, 3, 4, 3, 4, 1, 2, 1, 2, 3, 4, 3, 4})), 0);
  EXPECT_THROW(OpTest("Tile").inputs({f32({2}, {1, 2}), i64({2}, {1, 1})}).run_ref(), Error);
}

TEST(Pad, Modes) {
  Tensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  auto c = OpTest("Pad").inputs({x, i64({4}, {0, 1, 1, 0}), f32({}, {9})}).run_ref();
  EXPECT_EQ(max_abs_diff(c[0], f32({3, 4}, {9, 1, 2, 3, 9, 4, 5, 6, 9, 9, 9, 9})), 0);
  auto r = OpTest("Pad").inputs({x, i64({4}, {0, 2, 0, 2})}).attr("mode", "reflect").run_ref();
  EXPECT_EQ(max_abs_diff(r[0], f32({2, 7}, {3, 2, 1, 2, 3, 2, 1, 6, 5, 4, 5, 6, 5, 4})), 0);
  auto e = OpTest("Pad").inputs({x, i64({4}, {1, 0, 0, 1})}).attr("mode", "edge").run_ref();
  EXPECT_EQ(max_abs_diff(e[0], f32({3, 4}, {1, 2, 3, 3, 1, 2, 3, 3, 4, 5, 6, 6})), 0);
  // Negative pads crop; opset 2-10 form with pads/value attributes.
  auto old =
      OpTest("Pad").inputs({x}).attr("pads", {0, -1, 0, 0}).attr("value", 0.0f).opset(10).run_ref();
  EXPECT_EQ(max_abs_diff(old[0], f32({2, 2}, {2, 3, 5, 6})), 0);
  // opset 18 axes input.
  auto ax =
      OpTest("Pad").inputs({x, i64({2}, {1, 0}), Tensor(), i64({1}, {-1})}).opset(18).run_ref();
  EXPECT_EQ(max_abs_diff(ax[0], f32({2, 4}, {0, 1, 2, 3, 0, 4, 5, 6})), 0);
  EXPECT_THROW(OpTest("Pad").inputs({x, i64({2}, {1, 1})}).run_ref(), Error);
}

TEST(DepthToSpace, DcrCrdAndSpaceToDepthRoundTrip) {
  // N=1, C=4, H=1, W=2, blocksize 2.
  Tensor x = iota_f32({1, 4, 1, 2});
  auto dcr = OpTest("DepthToSpace").input(x).attr("blocksize", 2).run_ref();
  // out[0][0][b1][w*2+b2] = x[0][b1*2+b2][0][w]
  EXPECT_EQ(max_abs_diff(dcr[0], f32({1, 1, 2, 4}, {0, 2, 1, 3, 4, 6, 5, 7})), 0);
  auto crd = OpTest("DepthToSpace")
                 .input(iota_f32({1, 8, 1, 1}))
                 .attr("blocksize", 2)
                 .attr("mode", "CRD")
                 .run_ref();
  // CRD: channel c*4 + b1*2 + b2 -> out[c][b1][b2].
  EXPECT_EQ(max_abs_diff(crd[0], f32({1, 2, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7})), 0);
  auto back = OpTest("SpaceToDepth").input(dcr[0]).attr("blocksize", 2).run_ref();
  EXPECT_EQ(max_abs_diff(back[0], x), 0);
  EXPECT_THROW(OpTest("DepthToSpace").input(iota_f32({1, 3, 1, 1})).attr("blocksize", 2).run_ref(),
               Error);
}

TEST(OneHot, AxisAndNegativeIndices) {
  auto out =
      OpTest("OneHot").inputs({i64({3}, {0, -1, 5}), f32({}, {3}), f32({2}, {0, 1})}).run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({3, 3}, {1, 0, 0, 0, 0, 1, 0, 0, 0})), 0);
  auto ax0 = OpTest("OneHot")
                 .inputs({i64({2}, {1, 0}), i64({1}, {2}), i64({2}, {-1, 7})})
                 .attr("axis", 0)
                 .run_ref();
  EXPECT_EQ(max_abs_diff(ax0[0], i64({2, 2}, {-1, 7, 7, -1})), 0);
}

TEST(NonZero, Coordinates) {
  auto out = OpTest("NonZero").input(f32({2, 2}, {1, 0, -0.0f, 3})).run_ref();
  EXPECT_EQ(max_abs_diff(out[0], i64({2, 2}, {0, 1, 0, 1})), 0);
}

TEST(Trilu, UpperLowerWithK) {
  Tensor x = iota_f32({3, 3});
  auto up = OpTest("Trilu").input(x).run_ref();
  EXPECT_EQ(max_abs_diff(up[0], f32({3, 3}, {0, 1, 2, 0, 4, 5, 0, 0, 8})), 0);
  auto low = OpTest("Trilu").inputs({x, i64({}, {-1})}).attr("upper", 0).run_ref();
  EXPECT_EQ(max_abs_diff(low[0], f32({3, 3}, {0, 0, 0, 3, 0, 0, 6, 7, 0})), 0);
}

TEST(CumSum, ExclusiveReverse) {
  Tensor x = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  auto out = OpTest("CumSum").inputs({x, i32({}, {1})}).run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({2, 3}, {1, 3, 6, 4, 9, 15})), 0);
  auto er =
      OpTest("CumSum").inputs({x, i64({}, {0})}).attr("exclusive", 1).attr("reverse", 1).run_ref();
  EXPECT_EQ(max_abs_diff(er[0], f32({2, 3}, {4, 5, 6, 0, 0, 0})), 0);
}

TEST(TopK, LargestSmallestAndTies) {
  Tensor x = f32({2, 4}, {1, 3, 3, 2, 0, -1, 5, 0});
  auto out = OpTest("TopK").inputs({x, i64({1}, {2})}).outputs(2).run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({2, 2}, {3, 3, 5, 0})), 0);
  EXPECT_EQ(max_abs_diff(out[1], i64({2, 2}, {1, 2, 2, 0})), 0);
  auto small = OpTest("TopK")
                   .inputs({x, i64({1}, {1})})
                   .attr("largest", 0)
                   .attr("axis", 0)
                   .outputs(2)
                   .run_ref();
  EXPECT_EQ(max_abs_diff(small[1], i64({1, 4}, {1, 1, 0, 1})), 0);
  EXPECT_THROW(OpTest("TopK").inputs({x, i64({1}, {5})}).outputs(2).run_ref(), Error);
}

TEST(Einsum, MatmulTraceDiagonalEllipsis) {
  Tensor a = iota_f32({2, 3}), b = iota_f32({3, 2});
  auto mm = OpTest("Einsum").inputs({a, b}).attr("equation", "ij,jk->ik").run_ref();
  EXPECT_EQ(max_abs_diff(mm[0], f32({2, 2}, {10, 13, 28, 40})), 0);
  auto implicit = OpTest("Einsum").inputs({a, b}).attr("equation", "ij,jk").run_ref();
  EXPECT_EQ(max_abs_diff(implicit[0], f32({2, 2}, {10, 13, 28, 40})), 0);
  Tensor sq = iota_f32({3, 3});
  auto trace = OpTest("Einsum").input(sq).attr("equation", "ii").run_ref();
  EXPECT_FLOAT_EQ(trace[0].data<float>()[0], 12);
  auto diag = OpTest("Einsum").input(sq).attr("equation", "ii->i").run_ref();
  EXPECT_EQ(max_abs_diff(diag[0], f32({3}, {0, 4, 8})), 0);
  auto tr = OpTest("Einsum").input(a).attr("equation", "ij->ji").run_ref();
  EXPECT_EQ(max_abs_diff(tr[0], f32({3, 2}, {0, 3, 1, 4, 2, 5})), 0);
  // Batched with a broadcast ellipsis: [2,1,2] x [3,2] -> [2,1,3]... via "...j,kj->...k".
  auto ell = OpTest("Einsum")
                 .inputs({iota_f32({2, 1, 2}), iota_f32({3, 2})})
                 .attr("equation", "...j,kj->...k")
                 .run_ref();
  EXPECT_EQ(max_abs_diff(ell[0], f32({2, 1, 3}, {1, 3, 5, 3, 13, 23})), 0);
  EXPECT_THROW(OpTest("Einsum").inputs({a, a}).attr("equation", "ij,jk->ik").run_ref(), Error);
}

}  // namespace
}  // namespace tandem

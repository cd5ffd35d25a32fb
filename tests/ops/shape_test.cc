// Shape family: Reshape, Flatten, Squeeze, Unsqueeze, Shape, Size, Identity, ConstantOfShape,
// Range, Expand, EyeLike, Constant. Expected values by hand.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_int;
using testing::f32;
using testing::i64;
using testing::max_abs_diff;
using testing::OpTest;
Tensor iota_f32(Shape s) {
  std::vector<float> v(static_cast<size_t>(shape_numel(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  return f32(s, v);
}
Attribute attr_tensor(Tensor t) {
  Attribute a;
  a.kind = Attribute::Kind::kTensor;
  a.t = std::move(t);
  return a;
}

TEST(Reshape, ZeroCopiesAndMinusOneInfers) {
  Tensor x = iota_f32({2, 3, 4});
  auto out = OpTest("Reshape").inputs({x, i64({3}, {0, -1, 2})}).run_ref();
  EXPECT_EQ(out[0].shape(), (Shape{2, 6, 2}));
  EXPECT_EQ(max_abs_diff(out[0], iota_f32({2, 6, 2})), 0);
  // allowzero=1: a 0 is a real zero-size dim.
  auto z = OpTest("Reshape")
               .inputs({f32({0, 3}, {}), i64({2}, {3, 0})})
               .attr("allowzero", 1)
               .opset(14)
               .run_ref();
  EXPECT_EQ(z[0].shape(), (Shape{3, 0}));
}

TEST(Reshape, MismatchNamesBothShapes) {
  try {
    OpTest("Reshape").inputs({iota_f32({2, 3}), i64({2}, {4, 2})}).run_ref();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("[2,3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 2]"), std::string::npos) << msg;
  }
  EXPECT_THROW(OpTest("Reshape").inputs({iota_f32({2, 3}), i64({2}, {-1, -1})}).run_ref(), Error);
}

TEST(Flatten, AxisIncludingNegativeAndZero) {
  Tensor x = iota_f32({2, 3, 4});
  EXPECT_EQ(OpTest("Flatten").input(x).run_ref()[0].shape(), (Shape{2, 12}));
  EXPECT_EQ(OpTest("Flatten").input(x).attr("axis", 0).run_ref()[0].shape(), (Shape{1, 24}));
  EXPECT_EQ(OpTest("Flatten").input(x).attr("axis", -1).run_ref()[0].shape(), (Shape{6, 4}));
  EXPECT_EQ(OpTest("Flatten").input(x).attr("axis", 3).run_ref()[0].shape(), (Shape{24, 1}));
}

TEST(SqueezeUnsqueeze, AttributeAndInputForms) {
  Tensor x = iota_f32({1, 3, 1, 2});
  EXPECT_EQ(OpTest("Squeeze").input(x).run_ref()[0].shape(), (Shape{3, 2}));
  EXPECT_EQ(OpTest("Squeeze").inputs({x, i64({1}, {-2})}).opset(13).run_ref()[0].shape(),
            (Shape{1, 3, 2}));
  EXPECT_EQ(OpTest("Squeeze").inputs({x}).attr("axes", {0}).opset(11).run_ref()[0].shape(),
            (Shape{3, 1, 2}));
  EXPECT_THROW(OpTest("Squeeze").inputs({x, i64({1}, {1})}).opset(13).run_ref(), Error);
  Tensor y = iota_f32({3, 2});
  auto u = OpTest("Unsqueeze").inputs({y, i64({2}, {3, 0})}).opset(13).run_ref();
  EXPECT_EQ(u[0].shape(), (Shape{1, 3, 2, 1}));
  EXPECT_EQ(max_abs_diff(u[0], iota_f32({1, 3, 2, 1})), 0);
  EXPECT_EQ(OpTest("Unsqueeze").inputs({y}).attr("axes", {-1}).opset(11).run_ref()[0].shape(),
            (Shape{3, 2, 1}));
}

TEST(Shape, StartEndAndSize) {
  Tensor x = iota_f32({2, 3, 4});
  EXPECT_EQ(max_abs_diff(OpTest("Shape").input(x).run_ref()[0], i64({3}, {2, 3, 4})), 0);
  auto s = OpTest("Shape").inputs({x}).attr("start", -2).opset(15).run_ref();
  EXPECT_EQ(max_abs_diff(s[0], i64({2}, {3, 4})), 0);
  auto clipped = OpTest("Shape").inputs({x}).attr("start", 1).attr("end", 10).opset(15).run_ref();
  EXPECT_EQ(max_abs_diff(clipped[0], i64({2}, {3, 4})), 0);
  auto size = OpTest("Size").input(x).run_ref();
  EXPECT_EQ(size[0].shape(), Shape{});
  EXPECT_EQ(size[0].data<int64_t>()[0], 24);
}

TEST(Identity, CopiesBool) {
  Tensor b = Tensor::from_vector<uint8_t>(DataType::kBool, {3}, {1, 0, 1});
  auto out = OpTest("Identity").input(b).run_ref();
  EXPECT_EQ(out[0].dtype(), DataType::kBool);
  EXPECT_EQ(max_abs_diff(out[0], b), 0);
}

TEST(ConstantOfShape, DefaultAndIntValue) {
  auto zeros = OpTest("ConstantOfShape").input(i64({2}, {2, 3})).run_ref();
  EXPECT_EQ(max_abs_diff(zeros[0], f32({2, 3}, std::vector<float>(6, 0))), 0);
  auto sevens =
      OpTest("ConstantOfShape")
          .input(i64({1}, {4}))
          .attr("value", attr_tensor(Tensor::from_vector<int32_t>(DataType::kInt32, {1}, {7})))
          .run_ref();
  EXPECT_EQ(
      max_abs_diff(sevens[0], Tensor::from_vector<int32_t>(DataType::kInt32, {4}, {7, 7, 7, 7})),
      0);
}

TEST(Range, IntAndFloat) {
  auto ints = OpTest("Range")
                  .inputs({Tensor::from_vector<int32_t>(DataType::kInt32, {}, {10}),
                           Tensor::from_vector<int32_t>(DataType::kInt32, {}, {4}),
                           Tensor::from_vector<int32_t>(DataType::kInt32, {}, {-3})})
                  .run_ref();
  EXPECT_EQ(max_abs_diff(ints[0], Tensor::from_vector<int32_t>(DataType::kInt32, {2}, {10, 7})), 0);
  auto floats = OpTest("Range").inputs({f32({}, {1}), f32({}, {2}), f32({}, {0.25f})}).run_ref();
  EXPECT_LT(max_abs_diff(floats[0], f32({4}, {1, 1.25f, 1.5f, 1.75f})), 1e-7);
  auto empty = OpTest("Range").inputs({f32({}, {5}), f32({}, {1}), f32({}, {1})}).run_ref();
  EXPECT_EQ(empty[0].shape(), Shape{0});
  EXPECT_THROW(OpTest("Range").inputs({f32({}, {0}), f32({}, {1}), f32({}, {0})}).run_ref(), Error);
}

TEST(Expand, BidirectionalBroadcast) {
  Tensor x = f32({3, 1}, {1, 2, 3});
  auto out = OpTest("Expand").inputs({x, i64({3}, {2, 1, 2})}).run_ref();
  EXPECT_EQ(out[0].shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(max_abs_diff(out[0], f32({2, 3, 2}, {1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3})), 0);
  EXPECT_THROW(OpTest("Expand").inputs({x, i64({2}, {2, 1})}).run_ref(), Error);
}

TEST(EyeLike, OffsetAndDtype) {
  auto out = OpTest("EyeLike").input(iota_f32({3, 4})).attr("k", 1).run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({3, 4}, {0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1})), 0);
  auto ints = OpTest("EyeLike")
                  .input(iota_f32({2, 2}))
                  .attr("dtype", static_cast<int64_t>(DataType::kInt64))
                  .run_ref();
  EXPECT_EQ(max_abs_diff(ints[0], i64({2, 2}, {1, 0, 0, 1})), 0);
}

TEST(Constant, ValueForms) {
  auto t = OpTest("Constant").inputs({}).attr("value", attr_tensor(f32({2}, {1.5f, -2}))).run_ref();
  EXPECT_EQ(max_abs_diff(t[0], f32({2}, {1.5f, -2})), 0);
  auto f = OpTest("Constant").inputs({}).attr("value_float", 0.5f).run_ref();
  EXPECT_EQ(f[0].shape(), Shape{});
  EXPECT_FLOAT_EQ(f[0].data<float>()[0], 0.5f);
  auto is = OpTest("Constant").inputs({}).attr("value_ints", {4, 5}).run_ref();
  EXPECT_EQ(max_abs_diff(is[0], i64({2}, {4, 5})), 0);
  EXPECT_THROW(OpTest("Constant").inputs({}).run_ref(), Error);
}

}  // namespace
}  // namespace tandem

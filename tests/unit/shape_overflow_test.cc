// Shape inference on hostile numbers: attributes, declared dims and constant inputs that would
// make int64 arithmetic wrap (undefined behaviour, which CI's fuzzers run under UBSan) or a
// double-to-int64 cast undefined. Each must give a tandem::Error naming the node, or, where the
// model is valid, the right shape. Every case here failed on the code before the fix (a wrong
// error, a wrong result, or a crash).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "expect_error.h"
#include "onnx_builder.h"
#include "ops/detection.h"
#include "tandem/model.h"

namespace tandem {
namespace {

using testing::add_int_attr;
using testing::add_ints_attr;
using testing::expect_error;
using testing::OnnxBuilder;

constexpr int64_t kHuge = INT64_MAX - 10;  // a spatial size a file may declare next to a 0 dim

void add_string_attr(onnx::NodeProto& node, const std::string& name, const std::string& v) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}

Tensor floats(Shape shape, std::vector<float> v) {
  return Tensor::from_vector(DataType::kFloat32, shape, v);
}

Tensor int64s(std::vector<int64_t> v) {
  return Tensor::from_vector(DataType::kInt64, {static_cast<int64_t>(v.size())}, v);
}

// Builds the model and asks for its outputs' shapes with its declared input shapes.
std::vector<TensorInfo> build(const OnnxBuilder& b, const std::string& name) {
  Model m = Model::build_from_file(b.save(testing::temp_dir(name)));
  std::vector<Shape> shapes;
  for (const TensorInfo& in : m.inputs()) shapes.push_back(in.shape);
  return m.output_info_for(shapes);
}

// A 1-D Conv of X with a [1, 1, 1] weight; `pads` as given.
OnnxBuilder conv_model(const Shape& x, const std::vector<int64_t>& pads) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, x);
  b.output("y", DataType::kFloat32, {-1, -1, -1});
  b.initializer("w", floats({1, 1, 1}, {1}));
  auto& n = b.node("Conv", {"x", "w"}, {"y"}, "the_conv");
  add_ints_attr(n, "pads", pads);
  return b;
}

TEST(ShapeOverflow, ConvPadsAddedToAHugeInput) {
  // The fuzz_tandem_format finding: in + pads wrapped (UBSan), which showed up as "smaller than
  // the dilated kernel" without the sanitizer.
  expect_error(
      [] {
        build(conv_model({0, 1, kHuge}, {1 << 30, 1 << 30}), "conv_pads_sum");
      },
      ErrorCode::kInvalidModel, {"the_conv", "overflows 64 bits"});
}

TEST(ShapeOverflow, ConvWindowAttributesAreBounded) {
  // A pad of 2^40 was taken; any window attribute over 2^31 is now refused where it is read.
  expect_error(
      [] {
        build(conv_model({1, 1, 4}, {int64_t{1} << 40, 0}), "conv_pads_bound");
      },
      ErrorCode::kInvalidModel, {"the_conv", "pads [1099511627776,0] in 0..2^31"});
  OnnxBuilder b = conv_model({1, 1, 4}, {0, 0});
  add_ints_attr(*b.proto().mutable_graph()->mutable_node(0), "strides", {INT64_MAX});
  expect_error([&] { build(b, "conv_strides_bound"); }, ErrorCode::kInvalidModel,
               {"the_conv", "must be in 1..2^31"});
}

TEST(ShapeOverflow, ConvSamePaddingOfAHugeInput) {
  // ceil(in / stride) was (in + stride - 1) / stride, which wrapped to a negative size.
  OnnxBuilder b = conv_model({0, 1, INT64_MAX}, {0, 0});
  onnx::NodeProto& n = *b.proto().mutable_graph()->mutable_node(0);
  n.clear_attribute();
  add_string_attr(n, "auto_pad", "SAME_UPPER");
  add_ints_attr(n, "strides", {2});
  const std::vector<TensorInfo> out = build(b, "conv_same");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].shape, (Shape{0, 1, int64_t{1} << 62}));
}

OnnxBuilder pool_model(const Shape& x, const std::vector<int64_t>& pads, bool ceil_mode) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, x);
  b.output("y", DataType::kFloat32, {-1, -1, -1});
  auto& n = b.node("MaxPool", {"x"}, {"y"}, "the_pool");
  add_ints_attr(n, "kernel_shape", {3});
  add_ints_attr(n, "pads", pads);
  add_int_attr(n, "ceil_mode", ceil_mode ? 1 : 0);
  return b;
}

TEST(ShapeOverflow, PoolPadsAddedToAHugeInput) {
  for (bool ceil_mode : {false, true})
    expect_error(
        [&] {
          build(pool_model({0, 1, kHuge}, {1 << 30, 1 << 30}, ceil_mode), "pool");
        },
        ErrorCode::kInvalidModel, {"the_pool", "overflows 64 bits"});
  expect_error(
      [] {
        build(pool_model({1, 1, 4}, {0, INT64_MAX}, false), "pool_bound");
      },
      ErrorCode::kInvalidModel, {"the_pool", "pads in 0..2^31"});
}

TEST(ShapeOverflow, PoolCeilModeNearTheTop) {
  // (padded - window + stride - 1) / stride wrapped; ceil(a / b) is now formed without it.
  OnnxBuilder b = pool_model({0, 1, INT64_MAX - 2}, {0, 0}, true);
  add_ints_attr(*b.proto().mutable_graph()->mutable_node(0), "strides", {1 << 30});
  const std::vector<TensorInfo> out = build(b, "pool_ceil");
  ASSERT_EQ(out.size(), 1u);
  // (2^63 - 3 - 3) / 2^30 rounded up, + 1, less the last window (it starts past the input).
  const int64_t span = INT64_MAX - 2 - 3;
  EXPECT_EQ(out[0].shape, (Shape{0, 1, span / (1 << 30) + 1}));
}

TEST(ShapeOverflow, ResizeScalesBeyondInt64) {
  // floor(4 * 1e30) was cast to int64: undefined, and a negative dim on x86.
  OnnxBuilder b(13);
  b.input("x", DataType::kFloat32, {1, 1, 4, 4});
  b.output("y", DataType::kFloat32, {-1, -1, -1, -1});
  b.initializer("scales", floats({4}, {1, 1, 1e30f, 1}));
  b.node("Resize", {"x", "", "scales"}, {"y"}, "the_resize");
  expect_error([&] { build(b, "resize_scales"); }, ErrorCode::kInvalidArgument,
               {"the_resize", "axis 2 of size 4 resized by", "not a valid size"});
}

TEST(ShapeOverflow, SliceWithAHugeStep) {
  // end - start + step - 1 wrapped for step near 2^63: the slice of one element was refused.
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {-1});
  b.output("z", DataType::kFloat32, {-1});
  b.initializer("starts", int64s({0}));
  b.initializer("ends", int64s({4}));
  b.initializer("axes", int64s({0}));
  b.initializer("up", int64s({INT64_MAX}));
  b.initializer("rstarts", int64s({3}));
  b.initializer("rends", int64s({INT64_MIN}));
  b.initializer("down", int64s({INT64_MIN}));
  b.node("Slice", {"x", "starts", "ends", "axes", "up"}, {"y"}, "slice_up");
  b.node("Slice", {"x", "rstarts", "rends", "axes", "down"}, {"z"}, "slice_down");
  Model m = Model::build_from_file(b.save(testing::temp_dir("slice_step")));
  const std::vector<Tensor> out =
      m.predict({Tensor::from_vector(DataType::kFloat32, {4}, std::vector<float>{1, 2, 3, 4})});
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(out[0].shape(), Shape{1});
  EXPECT_EQ(out[0].data<float>()[0], 1);
  ASSERT_EQ(out[1].shape(), Shape{1});
  EXPECT_EQ(out[1].data<float>()[0], 4);
}

TEST(ShapeOverflow, PadAndTriluOffsetsBeyond2To62) {
  // Pads of -(2^63 - 1) and 2^63 - 1 leave the size as it was, and the kernel's
  // output index - begin pad wrapped; Trilu's kernel adds k to a row index the same way.
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {4});
    b.output("y", DataType::kFloat32, {-1});
    b.initializer("pads", int64s({-INT64_MAX, INT64_MAX}));
    b.node("Pad", {"x", "pads"}, {"y"}, "the_pad");
    expect_error([&] { build(b, "pad_offsets"); }, ErrorCode::kInvalidArgument,
                 {"the_pad", "must be within +-2^62"});
  }
  {
    OnnxBuilder b(14);
    b.input("x", DataType::kFloat32, {2, 2});
    b.output("y", DataType::kFloat32, {2, 2});
    b.initializer("k", Tensor::from_vector(DataType::kInt64, {}, std::vector<int64_t>{INT64_MAX}));
    b.node("Trilu", {"x", "k"}, {"y"}, "the_trilu");
    expect_error([&] { build(b, "trilu_k"); }, ErrorCode::kInvalidArgument,
                 {"the_trilu", "must be within +-2^62"});
  }
}

TEST(ShapeOverflow, SplitNumOutputsMustMatchTheOutputs) {
  // num_outputs came from the file unchecked: 2^40 of them built a list of 2^40 sizes.
  OnnxBuilder b(18);
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {-1});
  auto& n = b.node("Split", {"x"}, {"y"}, "the_split");
  add_int_attr(n, "num_outputs", 3);
  expect_error([&] { build(b, "split"); }, ErrorCode::kInvalidModel,
               {"the_split", "num_outputs 3 differs from the node's 1 outputs"});
}

TEST(ShapeOverflow, BatchNormPerElementStatsOfAnEmptyBatch) {
  // Opset < 9 with spatial = 0 divided the element count by N: SIGFPE for N = 0.
  OnnxBuilder b(8);
  b.input("x", DataType::kFloat32, {0, 3, 2});
  b.output("y", DataType::kFloat32, {-1, -1, -1});
  for (const char* name : {"scale", "bias", "mean", "var"})
    b.initializer(name, floats({3, 2}, std::vector<float>(6, 1.0f)));
  auto& n = b.node("BatchNormalization", {"x", "scale", "bias", "mean", "var"}, {"y"}, "the_bn");
  add_int_attr(n, "spatial", 0);
  const std::vector<TensorInfo> out = build(b, "bn_empty");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].shape, (Shape{0, 3, 2}));
}

TEST(ShapeOverflow, NonMaxSuppressionWithoutALimit) {
  // max_output_boxes_per_class = INT64_MAX ("no limit") went through a double, 2^63, whose cast
  // back to int64 is undefined; on x86 it became INT64_MIN and no box was selected.
  OnnxBuilder b(11);
  b.input("scores", DataType::kFloat32, {1, 1, 2});
  b.output("y", DataType::kInt64, {-1, 3});
  b.initializer("boxes", floats({1, 2, 4}, {0, 0, 1, 1, 5, 5, 6, 6}));
  b.initializer("max", int64s({INT64_MAX}));
  b.node("NonMaxSuppression", {"boxes", "scores", "max"}, {"y"}, "the_nms");
  Model m = Model::build_from_file(b.save(testing::temp_dir("nms_max")));
  const std::vector<Tensor> out = m.predict({floats({1, 1, 2}, {0.9f, 0.8f})});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].shape(), (Shape{2, 3}));
}

TEST(ShapeOverflow, TriluWithAHugeKAtRunTime) {
  // k as an input is the caller's: INT64_MAX made the kernel's row + k wrap. Upper keeps no
  // element beyond the last column, lower keeps every one; INT64_MIN the other way round.
  for (bool upper : {true, false}) {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {2, 3});
    b.input("k", DataType::kInt64, {});
    b.output("y", DataType::kFloat32, {2, 3});
    testing::add_int_attr(b.node("Trilu", {"x", "k"}, {"y"}, "the_trilu"), "upper", upper);
    Model m = Model::build_from_file(b.save(testing::temp_dir("trilu_runtime_k")));
    const Tensor x = floats({2, 3}, {1, 2, 3, 4, 5, 6});
    for (int64_t k : {INT64_MAX, INT64_MIN}) {
      const std::vector<Tensor> out =
          m.predict({x, Tensor::from_vector(DataType::kInt64, {}, std::vector<int64_t>{k})});
      ASSERT_EQ(out.size(), 1u);
      const bool keep_all = upper == (k == INT64_MIN);
      for (int64_t i = 0; i < 6; ++i)
        EXPECT_EQ(out[0].data<float>()[i], keep_all ? float(i + 1) : 0.0f)
            << "upper " << upper << " k " << k << " element " << i;
    }
  }
}

TEST(ShapeOverflow, RoiAlignSamplingGridIsBounded) {
  // An adaptive grid takes ceil(roi extent / bins) samples a side: for this roi, 10^9 of them,
  // a loop that would not end (and a cast of any double). It is bounded by
  // kMaxRoiAlignSamplingRatio, as an explicit sampling_ratio is.
  auto model = [](int64_t ratio) {
    OnnxBuilder b(16);
    b.input("x", DataType::kFloat32, {1, 1, 4, 4});
    b.output("y", DataType::kFloat32, {1, 1, 1, 1});
    b.initializer("rois", floats({1, 4}, {0, 0, 1e9f, 1e9f}));
    b.initializer("idx", int64s({0}));
    auto& n = b.node("RoiAlign", {"x", "rois", "idx"}, {"y"}, "the_roi_align");
    testing::add_int_attr(n, "sampling_ratio", ratio);
    return b;
  };
  Model m = Model::build_from_file(model(0).save(testing::temp_dir("roi_adaptive")));
  const std::vector<Tensor> out = m.predict({floats({1, 1, 4, 4}, std::vector<float>(16, 1.0f))});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::isfinite(out[0].data<float>()[0]));
  expect_error([&] { build(model(kMaxRoiAlignSamplingRatio + 1), "roi_ratio"); },
               ErrorCode::kInvalidModel, {"the_roi_align", "sampling_ratio"});
}

}  // namespace
}  // namespace tandem

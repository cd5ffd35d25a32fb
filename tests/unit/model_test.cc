// Model + session: symbolic batch, shape sub-graph folding, resize, memory reuse, stats.
#include "tandem/model.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "onnx_builder.h"

namespace tandem {
namespace {

using testing::OnnxBuilder;

// y = Relu(Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])))  — torch's flatten pattern.
std::string flatten_model(const std::string& dir) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 3, 4});
  b.output("y", DataType::kFloat32, {-1, 12});
  b.initializer("zero", Tensor::from_vector(DataType::kInt64, {}, std::vector<int64_t>{0}));
  b.initializer("axes", Tensor::from_vector(DataType::kInt64, {1}, std::vector<int64_t>{0}));
  b.initializer("minus_one", Tensor::from_vector(DataType::kInt64, {1}, std::vector<int64_t>{-1}));
  b.node("Shape", {"x"}, {"shape"});
  auto& gather = b.node("Gather", {"shape", "zero"}, {"batch"});
  testing::add_int_attr(gather, "axis", 0);
  b.node("Unsqueeze", {"batch", "axes"}, {"batch1"});
  auto& concat = b.node("Concat", {"batch1", "minus_one"}, {"new_shape"});
  testing::add_int_attr(concat, "axis", 0);
  b.node("Reshape", {"x", "new_shape"}, {"flat"});
  b.node("Relu", {"flat"}, {"y"});
  return b.save(dir);
}

Tensor iota_input(int64_t batch) {
  Tensor t(DataType::kFloat32, {batch, 3, 4}, "x");
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(i % 7) - 3.f;
  return t;
}

TEST(Model, SymbolicBatchRunsAnyBatchAndFoldsTheShapeChain) {
  Model m = Model::build_from_file(flatten_model(testing::temp_dir("flatten")));
  ASSERT_EQ(m.inputs().size(), 1u);
  EXPECT_EQ(m.inputs()[0].shape, (Shape{-1, 3, 4}));
  EXPECT_EQ(m.inputs()[0].dim_names[0], "batch");
  for (int64_t batch : {1, 3, 5}) {
    Tensor x = iota_input(batch);
    auto out = m.predict({x});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].name(), "y");
    EXPECT_EQ(out[0].shape(), (Shape{batch, 12}));
    for (int64_t i = 0; i < x.numel(); ++i)
      ASSERT_FLOAT_EQ(out[0].data<float>()[i], std::max(0.f, x.data<float>()[i]));
    // Shape, Gather, Unsqueeze and Concat were folded at plan time: only Reshape and Relu run.
    EXPECT_EQ(m.last_stats().num_steps, 2);
  }
}

TEST(Model, InputShapesFixedAtBuildAreEnforced) {
  std::string path = flatten_model(testing::temp_dir("fixed"));
  Model m = Model::build_from_file(path, {}, {{"x", {2, 3, 4}}});
  EXPECT_EQ(m.inputs()[0].shape, (Shape{2, 3, 4}));
  EXPECT_NO_THROW(m.predict({iota_input(2)}));
  EXPECT_THROW(m.predict({iota_input(3)}), Error);
  m.resize({{"x", {3, 3, 4}}});
  EXPECT_NO_THROW(m.predict({iota_input(3)}));
}

TEST(Model, FixingAShapeThatContradictsTheModelFails) {
  std::string path = flatten_model(testing::temp_dir("contradict"));
  try {
    Model::build_from_file(path, {}, {{"x", {2, 5, 4}}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Model::build_from_file(path, {}, {{"nope", {1, 3, 4}}}), Error);
}

TEST(Model, MemoryIsReusedAlongAChain) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {64, 64});
  b.output("y", DataType::kFloat32, {64, 64});
  std::string prev = "x";
  for (int i = 0; i < 8; ++i) {
    std::string next = i == 7 ? "y" : "t" + std::to_string(i);
    b.node(i % 2 ? "Relu" : "Neg", {prev}, {next});
    prev = next;
  }
  Model m = Model::build_from_file(b.save(testing::temp_dir("chain")));
  Tensor x(DataType::kFloat32, {64, 64}, "x");
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i % 5) - 2;
  auto out = m.predict({x});
  // Neg, Relu four times: y = relu(-relu(-...)) = 0 for all but ... check against a direct loop.
  for (int64_t i = 0; i < x.numel(); ++i) {
    float v = x.data<float>()[i];
    for (int k = 0; k < 8; ++k) v = k % 2 ? std::max(0.f, v) : -v;
    ASSERT_FLOAT_EQ(out[0].data<float>()[i], v);
  }
  const RunStats& s = m.last_stats();
  // The CPU backend's Relu runs in place over the Neg before it: 4 buffers are requested, not 7.
  EXPECT_EQ(s.unplanned_bytes, 4u * 64 * 64 * 4);
  EXPECT_LE(s.arena_bytes, 2u * 64 * 64 * 4);             // a chain needs two buffers
  EXPECT_GE(s.peak_bytes, s.arena_bytes + 64u * 64 * 4);  // plus the owned output
}

// An elementwise op runs in place only when nothing reads its input afterwards: here `a` is read
// again by the Add, so the Relu must not overwrite it (s = a + relu(a), not 2 relu(a)); the
// Sigmoid may overwrite the Mul's output, which nobody else reads.
TEST(Model, InPlaceOnlyWhenTheInputIsDead) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {3, 50});
  b.output("y", DataType::kFloat32, {3, 50});
  b.node("Neg", {"x"}, {"a"});
  b.node("Relu", {"a"}, {"r"});
  b.node("Add", {"a", "r"}, {"s"});
  b.node("Mul", {"s", "s"}, {"m"});
  b.node("Sigmoid", {"m"}, {"q"});
  b.node("Neg", {"q"}, {"y"});
  Model m = Model::build_from_file(b.save(testing::temp_dir("in_place")));
  Tensor x(DataType::kFloat32, {3, 50}, "x");
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i % 9) - 4;
  for (int run = 0; run < 2; ++run) {
    auto out = m.predict({x});
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float a = -x.data<float>()[i], s = a + std::max(0.0f, a);
      ASSERT_NEAR(out[0].data<float>()[i], -1.0f / (1.0f + std::exp(-s * s)), 1e-6f) << i;
    }
  }
}

// Reshape / Flatten / Squeeze / Unsqueeze between two ops are views: no step runs and no bytes
// move, and the viewed buffer stays alive until the view's last reader.
TEST(Model, ReshapesAreViews) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4, 64});
  b.output("y", DataType::kFloat32, {4, 64});
  b.initializer("flat", Tensor::from_vector<int64_t>(DataType::kInt64, {1}, {256}));
  b.initializer("back", Tensor::from_vector<int64_t>(DataType::kInt64, {2}, {4, 64}));
  b.initializer("axes", Tensor::from_vector<int64_t>(DataType::kInt64, {1}, {0}));
  b.node("Neg", {"x"}, {"a"});
  b.node("Reshape", {"a", "flat"}, {"a_flat"});
  b.node("Unsqueeze", {"a_flat", "axes"}, {"a_row"});
  b.node("Neg", {"a_row"}, {"n"});  // reads the view
  b.node("Reshape", {"n", "back"}, {"n2"});
  b.node("Add", {"n2", "a"}, {"y"});  // reads the viewed root after its views
  Model m = Model::build_from_file(b.save(testing::temp_dir("views")));
  Tensor x(DataType::kFloat32, {4, 64}, "x");
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i % 7) - 3;
  auto out = m.predict({x});
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_FLOAT_EQ(out[0].data<float>()[i], 0.0f) << i;
  // Two live buffers (a and n) at most, not five.
  EXPECT_LE(m.last_stats().arena_bytes, 2u * 256 * 4);
  EXPECT_GE(m.last_stats().arena_bytes, 2u * 256 * 4 - 128);
}

TEST(Model, OutputThatIsAnInputOrConstantIsCopied) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2});
  b.output("x", DataType::kFloat32, {2});
  b.output("c", DataType::kFloat32, {1});
  b.initializer("c", Tensor::from_vector(DataType::kFloat32, {1}, std::vector<float>{7.f}));
  Model m = Model::build_from_file(b.save(testing::temp_dir("passthrough")));
  Tensor x = Tensor::from_vector(DataType::kFloat32, {2}, std::vector<float>{1.f, 2.f}, "x");
  auto out = m.predict({x});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(out[0].owns_data());
  EXPECT_NE(out[0].raw(), x.raw());
  EXPECT_FLOAT_EQ(out[1].data<float>()[0], 7.f);
}

}  // namespace
}  // namespace tandem

namespace tandem {
namespace {

// Reshape whose target shape arrives as a model input: its output shape is only known at run
// time, so the planner leaves that step (and what follows) to run-time inference.
TEST(Model, ValueDependentShapesAreInferredAtRunTime) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2, 6});
  b.input("shape", DataType::kInt64, {2});
  b.output("y", DataType::kFloat32, {-1, -1});
  b.node("Reshape", {"x", "shape"}, {"r"});
  b.node("Relu", {"r"}, {"y"});
  Model m = Model::build_from_file(b.save(testing::temp_dir("dynamic_reshape")));
  Tensor x(DataType::kFloat32, {2, 6}, "x");
  for (int64_t i = 0; i < 12; ++i) x.data<float>()[i] = static_cast<float>(i) - 6;
  for (auto target : {std::vector<int64_t>{3, 4}, std::vector<int64_t>{12, 1}}) {
    auto out = m.predict({x, Tensor::from_vector(DataType::kInt64, {2}, target, "shape")});
    EXPECT_EQ(out[0].shape(), (Shape{target[0], target[1]}));
    for (int64_t i = 0; i < 12; ++i)
      ASSERT_FLOAT_EQ(out[0].data<float>()[i], std::max(0.f, x.data<float>()[i]));
  }
  // A target that does not fit is an error naming the node, and the model keeps serving.
  EXPECT_THROW(m.predict({x, Tensor::from_vector(DataType::kInt64, {2}, std::vector<int64_t>{5, 5},
                                                 "shape")}),
               Error);
  EXPECT_NO_THROW(m.predict(
      {x, Tensor::from_vector(DataType::kInt64, {2}, std::vector<int64_t>{6, 2}, "shape")}));
}

// Weights over 2 GB live in external data files; the loader must read them whole.
TEST(LargeModel, ExternalDataOver2GB) {
  std::string dir = testing::temp_dir("over2gb");
  const int64_t n = (int64_t{1} << 29) + 16;  // floats: 2 GiB + 64 bytes
  {
    std::FILE* f = std::fopen((dir + "/weights.bin").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    // Sparse file: zeros everywhere but the last element.
    ASSERT_EQ(::ftruncate(::fileno(f), (n - 1) * 4), 0);
    std::fseek(f, (n - 1) * 4, SEEK_SET);
    float last = 42.5f;
    std::fwrite(&last, 4, 1, f);
    std::fclose(f);
  }
  OnnxBuilder b;
  b.input("idx", DataType::kInt64, {1});
  b.output("y", DataType::kFloat32, {1});
  auto* init = b.proto().mutable_graph()->add_initializer();
  init->set_name("w");
  init->set_data_type(onnx::TensorProto::FLOAT);
  init->add_dims(n);
  init->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* kv = init->add_external_data();
  kv->set_key("location");
  kv->set_value("weights.bin");
  auto& gather = b.node("Gather", {"w", "idx"}, {"y"});
  testing::add_int_attr(gather, "axis", 0);
  Model m = Model::build_from_file(b.save(dir));
  EXPECT_EQ(m.parameter_count(), n);
  auto out =
      m.predict({Tensor::from_vector(DataType::kInt64, {1}, std::vector<int64_t>{n - 1}, "idx")});
  EXPECT_FLOAT_EQ(out[0].data<float>()[0], 42.5f);
  out = m.predict({Tensor::from_vector(DataType::kInt64, {1}, std::vector<int64_t>{7}, "idx")});
  EXPECT_FLOAT_EQ(out[0].data<float>()[0], 0.f);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tandem

namespace tandem {
namespace {

TEST(Model, PredictIntoWritesTheCallersBuffers) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2, 3});
  b.output("y", DataType::kFloat32, {2, 3});
  b.output("x_again", DataType::kFloat32, {2, 3});
  b.node("Relu", {"x"}, {"y"});
  b.node("Identity", {"x"}, {"x_again"});
  Model m = Model::build_from_file(b.save(testing::temp_dir("predict_into")));
  Tensor x(DataType::kFloat32, {2, 3}, "x");
  for (int i = 0; i < 6; ++i) x.data<float>()[i] = static_cast<float>(i) - 3;
  std::vector<float> y(6, 99.f), x_again(6, 99.f);
  std::vector<Tensor> outs = {Tensor::borrow(DataType::kFloat32, {2, 3}, y.data()),
                              Tensor::borrow(DataType::kFloat32, {2, 3}, x_again.data())};
  m.predict_into({x}, outs);
  for (int i = 0; i < 6; ++i) {
    EXPECT_FLOAT_EQ(y[i], std::max(0.f, i - 3.f));
    EXPECT_FLOAT_EQ(x_again[i], i - 3.f);
  }
  std::vector<float> small(3);
  EXPECT_THROW(
      m.predict_into({x}, {Tensor::borrow(DataType::kFloat32, {3}, small.data()), outs[1]}), Error);
  EXPECT_THROW(m.predict_into({x}, {outs[0]}), Error);
}

}  // namespace
}  // namespace tandem

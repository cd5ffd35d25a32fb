// Bad input of every kind gets a tandem::Error whose message names what was wrong — never a
// crash. This suite also runs under ASan + UBSan in CI.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "onnx/tensor_proto.h"
#include "onnx_builder.h"
#include "tandem/model.h"

namespace tandem {
namespace {

using testing::OnnxBuilder;
namespace fs = std::filesystem;

// Expects `fn` to throw tandem::Error with `code` and every fragment in its message.
template <typename F>
void expect_error(F&& fn, ErrorCode code, std::vector<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const auto& f : fragments)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
          << "message '" << e.what() << "' lacks '" << f << "'";
  }
}

std::string add_model(const std::string& dir, int64_t opset = 17) {
  OnnxBuilder b(opset);
  b.input("a", DataType::kFloat32, {-1, 3});
  b.input("b", DataType::kFloat32, {1, 3});
  b.output("y", DataType::kFloat32, {-1, 3});
  b.node("Add", {"a", "b"}, {"y"}, "the_add");
  return b.save(dir);
}

Tensor filled(const std::string& name, Shape shape, DataType dtype = DataType::kFloat32) {
  Tensor t(dtype, shape, name);
  if (dtype == DataType::kFloat32)
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 0.5f * i;
  return t;
}

TEST(BadInput, MissingFile) {
  expect_error([] { Model::build_from_file("/nonexistent/model.onnx"); }, ErrorCode::kNotFound,
               {"/nonexistent/model.onnx"});
}

TEST(BadInput, GarbageFile) {
  std::string dir = testing::temp_dir("garbage");
  std::ofstream(dir + "/model.onnx") << "this is not an onnx model \x01\x02\xff\xfe garbage";
  expect_error([&] { Model::build_from_file(dir + "/model.onnx"); }, ErrorCode::kInvalidModel,
               {"not a valid ONNX model"});
}

TEST(BadInput, TruncatedModel) {
  std::string dir = testing::temp_dir("truncated");
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4, 4});
  b.output("y", DataType::kFloat32, {4, 4});
  Tensor w(DataType::kFloat32, {4, 4});
  b.initializer("w", w);
  b.node("MatMul", {"x", "w"}, {"y"});
  std::string path = b.save(dir);
  auto size = fs::file_size(path);
  for (auto keep : {size / 2, size - 3, size_t{1}}) {
    fs::resize_file(path, keep);
    expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel, {path});
    b.save(dir);
  }
}

TEST(BadInput, UnknownOpNamesOpTypeAndNode) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2});
  b.output("y", DataType::kFloat32, {2});
  b.node("FrobnicateTensor", {"x"}, {"y"}, "mystery_node");
  std::string path = b.save(testing::temp_dir("unknown_op"));
  expect_error([&] { Model::build_from_file(path); }, ErrorCode::kUnsupported,
               {"FrobnicateTensor", "mystery_node"});
}

TEST(BadInput, UnsupportedOpset) {
  for (int64_t opset : {0, 99}) {
    std::string path = add_model(testing::temp_dir("opset" + std::to_string(opset)), opset);
    expect_error([&] { Model::build_from_file(path); }, ErrorCode::kUnsupported,
                 {"opset " + std::to_string(opset), "1 to 18"});
  }
}

TEST(BadInput, DanglingValueName) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2});
  b.output("y", DataType::kFloat32, {2});
  b.node("Add", {"x", "ghost"}, {"y"}, "adder");
  std::string path = b.save(testing::temp_dir("dangling"));
  expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel,
               {"ghost", "adder"});
}

TEST(BadInput, MissingExternalData) {
  std::string dir = testing::temp_dir("external");
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {4});
  auto* init = b.proto().mutable_graph()->add_initializer();
  init->set_name("w");
  init->set_data_type(onnx::TensorProto::FLOAT);
  init->add_dims(4);
  init->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* kv = init->add_external_data();
  kv->set_key("location");
  kv->set_value("weights.bin");
  b.node("Add", {"x", "w"}, {"y"});
  std::string path = b.save(dir);
  expect_error([&] { Model::build_from_file(path); }, ErrorCode::kNotFound, {"weights.bin", "'w'"});

  // With the file present it loads and computes; a short file is an error again.
  std::vector<float> w = {1, 2, 3, 4};
  std::ofstream(dir + "/weights.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(w.data()), 16);
  Model m = Model::build_from_file(path);
  auto out = m.predict({Tensor::from_vector(DataType::kFloat32, {4}, std::vector<float>{1, 1, 1, 1}, "x")});
  EXPECT_FLOAT_EQ(out[0].data<float>()[3], 5.f);
  fs::resize_file(dir + "/weights.bin", 8);
  expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel, {"too short"});
}

TEST(BadInput, MissingInput) {
  Model m = Model::build_from_file(add_model(testing::temp_dir("missing")));
  expect_error([&] { m.predict({filled("a", {2, 3})}); }, ErrorCode::kInvalidArgument,
               {"missing input 'b'"});
}

TEST(BadInput, WrongInputName) {
  Model m = Model::build_from_file(add_model(testing::temp_dir("wrongname")));
  expect_error([&] { m.predict({filled("a", {2, 3}), filled("bee", {1, 3})}); },
               ErrorCode::kInvalidArgument, {"unknown input name 'bee'", "a, b"});
}

TEST(BadInput, WrongShape) {
  Model m = Model::build_from_file(add_model(testing::temp_dir("wrongshape")));
  expect_error([&] { m.predict({filled("a", {2, 4}), filled("b", {1, 3})}); },
               ErrorCode::kInvalidArgument, {"'a'", "[2,4]", "[batch,3]"});
  expect_error([&] { m.predict({filled("a", {2, 3, 1}), filled("b", {1, 3})}); },
               ErrorCode::kInvalidArgument, {"'a'", "[2,3,1]"});
}

TEST(BadInput, WrongDtype) {
  Model m = Model::build_from_file(add_model(testing::temp_dir("wrongdtype")));
  expect_error([&] { m.predict({filled("a", {2, 3}, DataType::kInt64), filled("b", {1, 3})}); },
               ErrorCode::kInvalidArgument, {"'a'", "int64", "float32"});
}

TEST(BadInput, ZeroSizedDimension) {
  Model m = Model::build_from_file(add_model(testing::temp_dir("zero")));
  expect_error([&] { m.predict({filled("a", {0, 3}), filled("b", {1, 3})}); },
               ErrorCode::kInvalidArgument, {"'a'", "zero-sized"});
}

TEST(BadInput, TheModelKeepsServingAfterAnError) {
  Model m = Model::build_from_file(add_model(testing::temp_dir("keeps")));
  EXPECT_THROW(m.predict({filled("a", {2, 4}), filled("b", {1, 3})}), Error);
  auto out = m.predict({filled("a", {2, 3}), filled("b", {1, 3})});
  EXPECT_FLOAT_EQ(out[0].data<float>()[5], 2.5f + 1.0f);
}

TEST(BadInput, NaNPropagates) {
  Model m = Model::build_from_file(add_model(testing::temp_dir("nan")));
  Tensor a = filled("a", {2, 3});
  a.data<float>()[4] = NAN;
  auto out = m.predict({a, filled("b", {1, 3})});
  EXPECT_TRUE(std::isnan(out[0].data<float>()[4]));
  EXPECT_FALSE(std::isnan(out[0].data<float>()[3]));
}

TEST(BadInput, UnknownDeviceAndBadContext) {
  std::string path = add_model(testing::temp_dir("device"));
  Context ctx;
  ctx.device = "tpu:0";
  expect_error([&] { Model::build_from_file(path, ctx); }, ErrorCode::kInvalidArgument, {"tpu:0"});
  ctx.device = "cuda:0";
  expect_error([&] { Model::build_from_file(path, ctx); }, ErrorCode::kUnsupported,
               {"CUDA backend not available"});
  ctx.device = "cpu";
  ctx.core_list = {100000};
  expect_error([&] { Model::build_from_file(path, ctx); }, ErrorCode::kInvalidArgument,
               {"core 100000"});
}

TEST(BadInput, BadTensorFile) {
  std::string dir = testing::temp_dir("badpb");
  std::ofstream(dir + "/input_0.pb") << "\xff\xff\xff garbage";
  expect_error([&] { read_tensor_file(dir + "/input_0.pb"); }, ErrorCode::kInvalidArgument,
               {"input_0.pb"});
  expect_error([&] { read_tensor_file(dir + "/nope.pb"); }, ErrorCode::kNotFound, {"nope.pb"});
}

}  // namespace
}  // namespace tandem

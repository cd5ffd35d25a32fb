// Bad input of every kind gets a tandem::Error whose message names what was wrong — never a
// crash. This suite also runs under ASan + UBSan in CI.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "onnx/tensor_proto.h"
#include "expect_error.h"
#include "onnx_builder.h"
#include "tandem/model.h"

namespace tandem {
namespace {

using testing::OnnxBuilder;
namespace fs = std::filesystem;

using testing::expect_error;

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
               {"FrobnicateTensor", "mystery_node", "no schema"});
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

// ---- Hostile models: sizes (issue 10, defect 2) ----

// An int64 constant initializer `name` holding `values`.
void int64_initializer(OnnxBuilder& b, const std::string& name, std::vector<int64_t> values) {
  b.initializer(
      name, Tensor::from_vector(DataType::kInt64, {static_cast<int64_t>(values.size())}, values));
}

// Builds and predicts `path` with a [4] float input "x" (if the build gets that far).
void build_and_run(const std::string& path, const Context& ctx = {}) {
  Model m = Model::build_from_file(path, ctx);
  m.predict({Tensor::from_vector(DataType::kFloat32, {4}, std::vector<float>{1, 2, 3, 4}, "x")});
}

TEST(BadInput, InitializerWithOverflowingDims) {
  // The 64-byte model of the issue: an initializer of dims [2^62] and empty raw data
  // (`tandem info` died of SIGSEGV).
  for (auto dtype : {onnx::TensorProto::FLOAT, onnx::TensorProto::UINT8}) {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {4});
    b.output("y", DataType::kFloat32, {4});
    auto* init = b.proto().mutable_graph()->add_initializer();
    init->set_name("huge");
    init->set_data_type(dtype);
    init->add_dims(int64_t{1} << 62);
    init->set_raw_data("");
    b.node("Identity", {"x"}, {"y"});
    std::string path = b.save(testing::temp_dir("init_overflow"));
    // float: 2^62 x 4 bytes overflows; uint8: 2^62 bytes is over the per-tensor cap.
    expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel,
                 {"initializer 'huge'",
                  dtype == onnx::TensorProto::FLOAT ? "overflows" : "per-tensor limit"});
  }
}

TEST(BadInput, InitializerDataMustMatchItsDims) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {4});
  auto* init = b.proto().mutable_graph()->add_initializer();
  init->set_name("w");
  init->set_data_type(onnx::TensorProto::FLOAT);
  init->add_dims(4);
  init->add_float_data(1.f);  // 1 value for 4 elements
  b.node("Add", {"x", "w"}, {"y"});
  std::string dir = testing::temp_dir("init_count");
  std::string path = b.save(dir);
  expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel,
               {"initializer 'w'", "holds 1 values", "needs 4"});
  init->clear_float_data();
  init->set_raw_data(std::string(8, '\0'));
  path = b.save(dir);
  expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel,
               {"initializer 'w'", "raw data holds 8 bytes"});
  init->clear_raw_data();
  init->clear_dims();
  init->add_dims(-4);
  path = b.save(dir);
  expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel,
               {"initializer 'w'", "negative dimension"});
}

TEST(BadInput, ReshapeToOverflowingShapeThenTranspose) {
  // Reshape to [2^62+1, 4] then Transpose crashed `run`.
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {-1, -1});
  int64_initializer(b, "shape", {(int64_t{1} << 62) + 1, 4});
  b.node("Reshape", {"x", "shape"}, {"r"}, "reshape");
  b.node("Transpose", {"r"}, {"y"});
  std::string path = b.save(testing::temp_dir("reshape_overflow"));
  expect_error([&] { build_and_run(path); }, ErrorCode::kInvalidModel, {"reshape", "overflows"});
}

TEST(BadInput, ExpandToOverflowingShape) {
  // Expand to [2^62, 4] raised SIGFPE.
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {-1, -1});
  int64_initializer(b, "shape", {int64_t{1} << 62, 4});
  b.node("Expand", {"x", "shape"}, {"y"}, "expand");
  std::string path = b.save(testing::temp_dir("expand_overflow"));
  expect_error([&] { build_and_run(path); }, ErrorCode::kInvalidModel, {"expand", "overflows"});
}

TEST(BadInput, TileAndPadThatOverflow) {
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {4});
    b.output("y", DataType::kFloat32, {-1});
    int64_initializer(b, "reps", {int64_t{1} << 62});
    b.node("Tile", {"x", "reps"}, {"y"}, "tile");
    std::string path = b.save(testing::temp_dir("tile_overflow"));
    expect_error([&] { build_and_run(path); }, ErrorCode::kInvalidModel, {"tile", "overflows"});
  }
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {4});
    b.output("y", DataType::kFloat32, {-1});
    int64_initializer(b, "pads", {INT64_MAX, INT64_MAX});
    b.node("Pad", {"x", "pads"}, {"y"}, "pad");
    std::string path = b.save(testing::temp_dir("pad_overflow"));
    expect_error([&] { build_and_run(path); }, ErrorCode::kInvalidArgument, {"pad", "pads"});
  }
}

TEST(BadInput, RangeWithTooManyElements) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kInt64, {-1});
  b.output("z", DataType::kFloat32, {-1});
  int64_initializer(b, "start", {INT64_MIN});
  int64_initializer(b, "limit", {INT64_MAX});
  int64_initializer(b, "delta", {1});
  b.node("Squeeze", {"start"}, {"s0"});
  b.node("Squeeze", {"limit"}, {"l0"});
  b.node("Squeeze", {"delta"}, {"d0"});
  b.node("Range", {"s0", "l0", "d0"}, {"y"}, "range");
  b.node("Identity", {"x"}, {"z"});
  std::string path = b.save(testing::temp_dir("range"));
  expect_error([&] { build_and_run(path); }, ErrorCode::kInvalidArgument,
               {"range", "too many elements"});
}

TEST(BadInput, GatherWithHugeIndex) {
  // Gather with a huge index read heap bytes from before the buffer.
  for (int64_t index : {int64_t{1} << 40, -(int64_t{1} << 40), INT64_MIN, INT64_MAX}) {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {4});
    b.output("y", DataType::kFloat32, {1});
    int64_initializer(b, "idx", {index});
    b.node("Gather", {"x", "idx"}, {"y"}, "gather");
    std::string path = b.save(testing::temp_dir("gather"));
    expect_error([&] { build_and_run(path); }, ErrorCode::kInvalidArgument,
                 {"gather", "out of range"});
  }
}

// Peak resident memory of this process, in bytes.
size_t peak_rss() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<size_t>(u.ru_maxrss) * 1024;
}

std::string constant_of_shape_model(const std::string& dir, int64_t n) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {n});
  int64_initializer(b, "shape", {n});
  b.node("ConstantOfShape", {"shape"}, {"y"}, "fill");
  return b.save(testing::temp_dir(dir));
}

TEST(BadInput, ConstantFoldingKeepsToItsCap) {
  // ConstantOfShape [2^28] made `tandem info` (a build) allocate and zero 1 GiB: a node that large
  // is no longer folded at build time.
  std::string path = constant_of_shape_model("fold_cap", int64_t{1} << 28);
  const size_t before = peak_rss();
  Model m = Model::build_from_file(path);
  EXPECT_LT(peak_rss(), before + (size_t{256} << 20)) << "the build allocated the 1 GiB tensor";
  // A small one still folds (and runs).
  Model small = Model::build_from_file(constant_of_shape_model("fold_small", 16));
  auto out = small.predict({Tensor(DataType::kFloat32, {4}, "x")});
  EXPECT_EQ(out[0].numel(), 16);
  // The run-time cap refuses the big one, at build already since its shape is static.
  Context ctx;
  ctx.max_tensor_bytes = size_t{512} << 20;
  expect_error([&] { Model::build_from_file(path, ctx); }, ErrorCode::kInvalidModel,
               {"fill", "per-tensor limit of 536870912 bytes"});
}

TEST(BadInput, ModelSizeCap) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {4});
  b.initializer("w1", Tensor(DataType::kFloat32, {4}));
  b.initializer("w2", Tensor(DataType::kFloat32, {4}));
  b.node("Add", {"x", "w1"}, {"s"});
  b.node("Add", {"s", "w2"}, {"y"});
  std::string path = b.save(testing::temp_dir("model_cap"));
  Context ctx;
  ctx.max_model_bytes = 24;
  expect_error([&] { Model::build_from_file(path, ctx); }, ErrorCode::kInvalidModel,
               {"initializer 'w2'", "per-model limit of 24 bytes"});
  ctx.max_model_bytes = 32;
  EXPECT_NO_THROW(build_and_run(path, ctx));
  ctx.max_tensor_bytes = 8;
  expect_error([&] { Model::build_from_file(path, ctx); }, ErrorCode::kInvalidModel,
               {"initializer 'w1'", "per-tensor limit of 8 bytes"});
}

// ---- Hostile models: external data (issue 10, defect 3) ----

// A model in `dir` whose initializer 'w' ([4] float) lives in external data `location`, with
// extra external_data entries.
std::string external_model(const std::string& dir, const std::string& location,
                           std::vector<std::pair<std::string, std::string>> extra = {}) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {4});
  auto* init = b.proto().mutable_graph()->add_initializer();
  init->set_name("w");
  init->set_data_type(onnx::TensorProto::FLOAT);
  init->add_dims(4);
  init->set_data_location(onnx::TensorProto::EXTERNAL);
  extra.insert(extra.begin(), {"location", location});
  for (const auto& [k, v] : extra) {
    auto* kv = init->add_external_data();
    kv->set_key(k);
    kv->set_value(v);
  }
  b.node("Add", {"x", "w"}, {"y"});
  return b.save(dir);
}

void write_floats(const std::string& path, int n) {
  std::vector<float> w(n, 1.f);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(w.data()), static_cast<std::streamsize>(4 * n));
}

TEST(BadInput, ExternalDataMustStayInTheModelsFolder) {
  std::string root = testing::temp_dir("ext_escape");
  std::string dir = root + "/model";
  fs::create_directories(dir);
  write_floats(root + "/secret.bin", 4);  // outside the model's folder
  write_floats(dir + "/weights.bin", 4);
  expect_error([&] { Model::build_from_file(external_model(dir, root + "/secret.bin")); },
               ErrorCode::kInvalidModel, {"'w'", "absolute"});
  expect_error([&] { Model::build_from_file(external_model(dir, "/etc/passwd")); },
               ErrorCode::kInvalidModel, {"'w'", "absolute"});
  expect_error([&] { Model::build_from_file(external_model(dir, "../secret.bin")); },
               ErrorCode::kInvalidModel, {"'w'", "'..'"});
  expect_error([&] { Model::build_from_file(external_model(dir, "sub/../../secret.bin")); },
               ErrorCode::kInvalidModel, {"'w'", "'..'"});
  fs::create_symlink(root + "/secret.bin", dir + "/link.bin");
  expect_error([&] { Model::build_from_file(external_model(dir, "link.bin")); },
               ErrorCode::kInvalidModel, {"'w'", "outside the folder"});
  fs::create_directory_symlink(root, dir + "/up");
  expect_error([&] { Model::build_from_file(external_model(dir, "up/secret.bin")); },
               ErrorCode::kInvalidModel, {"'w'", "outside the folder"});
  // A symlink that stays inside is fine, and so is a plain relative name.
  fs::create_symlink("weights.bin", dir + "/inside.bin");
  EXPECT_NO_THROW(build_and_run(external_model(dir, "inside.bin")));
  EXPECT_NO_THROW(build_and_run(external_model(dir, "weights.bin")));
}

TEST(BadInput, ExternalDataThatIsNotARegularFile) {
  std::string dir = testing::temp_dir("ext_fifo");
  ASSERT_EQ(::mkfifo((dir + "/fifo.bin").c_str(), 0600), 0);
  // A FIFO hung the loader forever; ctest's timeout would catch a regression.
  expect_error([&] { Model::build_from_file(external_model(dir, "fifo.bin")); },
               ErrorCode::kInvalidModel, {"'w'", "not a regular file"});
  fs::create_directory(dir + "/folder");
  expect_error([&] { Model::build_from_file(external_model(dir, "folder")); },
               ErrorCode::kInvalidModel, {"'w'", "not a regular file"});
}

TEST(BadInput, ExternalDataOffsetAndLength) {
  std::string dir = testing::temp_dir("ext_offset");
  write_floats(dir + "/weights.bin", 4);
  // `error: stoll` before: now the key, the value and the tensor are named.
  expect_error(
      [&] {
        Model::build_from_file(external_model(dir, "weights.bin", {{"offset", "abc"}}));
      },
      ErrorCode::kInvalidModel, {"'w'", "'offset'", "'abc'"});
  expect_error(
      [&] {
        Model::build_from_file(external_model(dir, "weights.bin", {{"length", "16x"}}));
      },
      ErrorCode::kInvalidModel, {"'w'", "'length'", "'16x'"});
  expect_error(
      [&] {
        Model::build_from_file(external_model(dir, "weights.bin", {{"offset", "-4"}}));
      },
      ErrorCode::kInvalidModel, {"'offset'", "'-4'"});
  expect_error(
      [&] {
        Model::build_from_file(
            external_model(dir, "weights.bin", {{"offset", "99999999999999999999"}}));
      },
      ErrorCode::kInvalidModel, {"'offset'"});
  // offset + length wraps int64.
  expect_error(
      [&] {
        Model::build_from_file(
            external_model(dir, "weights.bin", {{"offset", "9223372036854775800"}}));
      },
      ErrorCode::kInvalidModel, {"too short"});
  expect_error(
      [&] {
        Model::build_from_file(external_model(dir, "weights.bin", {{"length", "12"}}));
      },
      ErrorCode::kInvalidModel, {"length 12 does not match"});
  EXPECT_NO_THROW(
      build_and_run(external_model(dir, "weights.bin", {{"offset", "0"}, {"length", "16"}})));
}

TEST(BadInput, ExternalDataFromAModelInMemory) {
  std::string dir = testing::temp_dir("ext_memory");
  write_floats(dir + "/weights.bin", 4);
  std::ifstream in(external_model(dir, "weights.bin"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  expect_error([&] { Model::build_from_buffer(bytes.data(), bytes.size()); },
               ErrorCode::kInvalidModel, {"'w'", "loaded from memory"});
}

TEST(BadInput, TensorFilesMustStayInTheirFolder) {
  std::string root = testing::temp_dir("pb_escape");
  std::string dir = root + "/case";
  fs::create_directories(dir + "/test_data_set_0");
  write_tensor_file(Tensor(DataType::kFloat32, {4}, "x"), root + "/outside.pb");
  fs::create_symlink(root + "/outside.pb", dir + "/test_data_set_0/input_0.pb");
  fs::create_symlink("/etc/passwd", dir + "/test_data_set_0/input_1.pb");
  ASSERT_EQ(::mkfifo((dir + "/test_data_set_0/input_2.pb").c_str(), 0600), 0);
  expect_error([&] { read_tensor_file_inside(dir, "test_data_set_0/input_0.pb"); },
               ErrorCode::kInvalidModel, {"input_0.pb", "outside the folder"});
  expect_error([&] { read_tensor_file_inside(dir, "test_data_set_0/input_1.pb"); },
               ErrorCode::kInvalidModel, {"input_1.pb", "outside the folder"});
  expect_error([&] { read_tensor_file_inside(dir, "test_data_set_0/input_2.pb"); },
               ErrorCode::kInvalidModel, {"not a regular file"});
  expect_error([&] { read_tensor_file(dir + "/test_data_set_0/input_2.pb"); },
               ErrorCode::kInvalidModel, {"not a regular file"});
  expect_error([&] { read_tensor_file_inside(dir, "../outside.pb"); }, ErrorCode::kInvalidModel,
               {"'..'"});
  write_tensor_file(Tensor(DataType::kFloat32, {4}, "x"), dir + "/test_data_set_0/output_0.pb");
  EXPECT_EQ(read_tensor_file_inside(dir, "test_data_set_0/output_0.pb").numel(), 4);
}

TEST(BadInput, TensorBytesWithOverflowingDims) {
  onnx::TensorProto p;
  p.set_name("t");
  p.set_data_type(onnx::TensorProto::INT64);
  p.add_dims(int64_t{1} << 40);
  p.add_dims(int64_t{1} << 40);
  std::string bytes = p.SerializeAsString();
  expect_error([&] { tensor_from_bytes(bytes.data(), bytes.size(), "t"); },
               ErrorCode::kInvalidModel, {"overflows"});
  // A zero dim does not excuse the others: their product must fit too.
  p.add_dims(0);
  bytes = p.SerializeAsString();
  expect_error([&] { tensor_from_bytes(bytes.data(), bytes.size(), "t"); },
               ErrorCode::kInvalidModel, {"overflows"});
}

// ---- Small loader defects (issue 10, item 11) ----

TEST(BadInput, NodeWithoutOutputs) {
  // Found by fuzz_model: a ConstantOfShape with no output was folded, and its kernel wrote
  // through a null output (SEGV). Omitted outputs ("") count as none.
  for (std::vector<std::string> outs : {std::vector<std::string>{}, {""}}) {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {4});
    b.output("x", DataType::kFloat32, {4});
    int64_initializer(b, "s", {4});
    b.node("ConstantOfShape", {"s"}, outs, "fill");
    std::string path = b.save(testing::temp_dir("no_outputs"));
    expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel,
                 {"fill", "no outputs"});
  }
}

TEST(BadInput, MissingOpsetImport) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {4});
  b.node("Relu", {"x"}, {"y"});
  b.proto().clear_opset_import();
  std::string dir = testing::temp_dir("no_opset");
  b.proto().set_ir_version(8);
  std::string path = b.save(dir);
  // IR version >= 3 must import the default domain (the ONNX checker's rule).
  expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel,
               {"IR version 8", "opset_import"});
  // Before IR version 3 there was no opset_import: the spec's opset is 1.
  b.proto().set_ir_version(2);
  path = b.save(dir);
  Model m = Model::build_from_file(path);
  EXPECT_EQ(m.opset_imports().at(""), 1);
}

TEST(BadInput, DuplicateGraphInputNames) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {4});
  b.input("x", DataType::kFloat32, {4});
  b.output("y", DataType::kFloat32, {4});
  b.node("Relu", {"x"}, {"y"});
  std::string path = b.save(testing::temp_dir("dup_input"));
  expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel,
               {"graph input 'x' twice"});
}

}  // namespace
}  // namespace tandem

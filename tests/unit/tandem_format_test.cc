// The .tandem format: conversion gives bit-identical outputs to the .onnx path on the same
// kernels, the weights are views into a read-only mapping that lives as long as the model, every
// damaged file is refused with a message naming what is wrong, and the conversion cache hits,
// misses and rebuilds a corrupt entry.
#include "format/tandem_format.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "backends/cpu/prepack.h"
#include "core/half.h"
#include "core/hash.h"
#include "expect_error.h"
#include "onnx_builder.h"
#include "runtime/build_id.h"
#include "runtime/convert.h"
#include "tandem/model.h"

namespace tandem {
namespace {

using testing::OnnxBuilder;
namespace fs = std::filesystem;

const std::string kModels = TANDEM_MODELS_DIR;

using testing::expect_error;

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
template <typename T>
void put(std::string& bytes, size_t at, T v) {
  std::memcpy(bytes.data() + at, &v, sizeof v);
}
template <typename T>
T get(const std::string& bytes, size_t at) {
  T v;
  std::memcpy(&v, bytes.data() + at, sizeof v);
  return v;
}
// Recomputes the checksum, so a test reaches the checks behind it.
void reseal(std::string& bytes) {
  put<uint64_t>(bytes, 24, hash64(bytes.data() + 128, bytes.size() - 128));
}

// Deterministic inputs for `infos` (fixed shapes): floats in [-1, 1], integers in [0, 7).
std::vector<Tensor> inputs_for(const std::vector<TensorInfo>& infos) {
  std::vector<Tensor> out;
  for (const TensorInfo& info : infos) {
    Tensor t(info.dtype, info.shape, info.name);
    for (int64_t i = 0; i < t.numel(); ++i) {
      switch (info.dtype) {
        case DataType::kFloat32:
          t.data<float>()[i] = std::sin(0.37f * static_cast<float>(i));
          break;
        case DataType::kInt64:
          t.data<int64_t>()[i] = i % 7;
          break;
        case DataType::kInt32:
          t.data<int32_t>()[i] = static_cast<int32_t>(i % 7);
          break;
        case DataType::kBool:
          t.data<bool>()[i] = i % 2;
          break;
        default:
          ADD_FAILURE() << "no test input for " << dtype_name(info.dtype);
      }
    }
    out.push_back(std::move(t));
  }
  return out;
}

// Every symbolic dimension of the model's inputs fixed to 2.
ShapeMap fixed_shapes(const std::string& onnx) {
  ShapeMap shapes;
  for (const TensorInfo& in : Model::build_from_file(onnx).inputs()) {
    Shape s = in.shape;
    for (int64_t& d : s)
      if (d < 0) d = 2;
    shapes[in.name] = s;
  }
  return shapes;
}

bool mapped_in_this_process(const std::string& path) {
  std::string maps = read_bytes("/proc/self/maps");
  return maps.find(fs::canonical(path).string()) != std::string::npos;
}

class ConvertedModel : public ::testing::TestWithParam<std::string> {};

TEST_P(ConvertedModel, RunsBitIdenticalToTheOnnxPathFromAReadOnlyMapping) {
  const std::string onnx = kModels + "/" + GetParam() + "/model.onnx";
  const std::string out = testing::temp_dir("convert_" + GetParam()) + "/model.tandem";
  ConvertOptions opt;
  opt.input_shapes = fixed_shapes(onnx);
  ConvertSummary s = convert_to_tandem(onnx, out, opt);
  EXPECT_EQ(s.file_bytes, fs::file_size(out));
  EXPECT_LE(s.nodes_after, s.nodes_before);
  ASSERT_TRUE(is_tandem_file(out));

  Model reference = Model::build_from_file(onnx, {}, opt.input_shapes);
  std::vector<Tensor> expected = reference.predict(inputs_for(reference.inputs()));
  {
    const cpu::PrepackCounts before = cpu::prepack_counts();
    Model converted = Model::build_from_file(out);
    EXPECT_TRUE(mapped_in_this_process(out));
    ASSERT_EQ(converted.inputs().size(), reference.inputs().size());
    for (size_t i = 0; i < converted.inputs().size(); ++i)
      EXPECT_EQ(converted.inputs()[i].shape, reference.inputs()[i].shape);
    // Twice: a kernel writing into a weight would fault (PROT_READ) or change the second run.
    for (int run = 0; run < 2; ++run) {
      std::vector<Tensor> got = converted.predict(inputs_for(converted.inputs()));
      ASSERT_EQ(got.size(), expected.size());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].shape(), expected[i].shape()) << got[i].name();
        EXPECT_EQ(std::memcmp(got[i].raw(), expected[i].raw(), got[i].nbytes()), 0)
            << GetParam() << " output " << got[i].name() << " differs from the .onnx path";
      }
    }
    // Every weight a kernel packs came prepacked in the file (the shapes are the converted ones).
    const cpu::PrepackCounts after = cpu::prepack_counts();
    EXPECT_EQ(after.packed_here, before.packed_here);
    EXPECT_GE(after.from_file - before.from_file, s.prepacked_layouts);
  }
  // The model held the only reference to the mapping.
  EXPECT_FALSE(mapped_in_this_process(out));
}

INSTANTIATE_TEST_SUITE_P(Models, ConvertedModel,
                         ::testing::Values("sd_unet_tiny", "resnet_tiny", "gpt_tiny", "lstm_tiny",
                                           "bert_tiny", "mobilenet_tiny"));

// y = x + W_MARK (W_MARK a [4] float initializer: its tensor record is easy to find and patch).
std::string small_model(const std::string& dir) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 4});
  b.output("y", DataType::kFloat32, {-1, 4});
  b.initializer("W_MARK", Tensor::from_vector(DataType::kFloat32, {4},
                                              std::vector<float>{1.f, 2.f, 3.f, 4.f}));
  b.node("Add", {"x", "W_MARK"}, {"y"}, "add");
  return b.save(dir);
}

struct SmallFile {
  std::string dir, path, bytes;
  size_t tensor_record = 0;  // where W_MARK's dtype field starts in its tensor record
};

SmallFile small_file(const std::string& name, const std::string& target = "cpu") {
  SmallFile f;
  f.dir = testing::temp_dir(name);
  ConvertOptions opt;
  opt.batch = 3;
  opt.target = target;
  convert_to_tandem(small_model(f.dir), f.dir + "/good.tandem", opt);
  f.bytes = read_bytes(f.dir + "/good.tandem");
  f.path = f.dir + "/bad.tandem";
  // The last "W_MARK" is the constant's tensor record (the first is the value's name).
  size_t at = f.bytes.rfind("W_MARK");
  EXPECT_NE(at, std::string::npos);
  f.tensor_record = at + 6;
  return f;
}

TEST(TandemFormat, SmallModelRoundTripsWithFixedShapesAndResize) {
  SmallFile f = small_file("tandem_small");
  Model m = Model::build_from_file(f.dir + "/good.tandem");
  ASSERT_EQ(m.inputs().size(), 1u);
  EXPECT_EQ(m.inputs()[0].shape, (Shape{3, 4}));
  Tensor x = Tensor::from_vector(DataType::kFloat32, {3, 4}, std::vector<float>(12, 1.f), "x");
  std::vector<Tensor> y = m.predict({x});
  EXPECT_EQ(y[0].data<float>()[5], 3.f);
  // The declared shape stays symbolic: resize to another batch, as for the .onnx.
  m.resize({{"x", {5, 4}}});
  EXPECT_EQ(m.inputs()[0].shape, (Shape{5, 4}));
}

TEST(TandemFormat, ConstantsAreViewsIntoTheBytesNotCopies) {
  SmallFile f = small_file("tandem_views");
  auto buf = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(std::aligned_alloc(64, 4096)),
                                      [](uint8_t* p) { std::free(p); });
  ASSERT_LE(f.bytes.size(), 4096u);
  std::memcpy(buf.get(), f.bytes.data(), f.bytes.size());
  TandemModel m = read_tandem_bytes(buf.get(), f.bytes.size(), buf, "buf", "cpu", {});
  int constants = 0;
  for (const auto& v : m.graph->values()) {
    if (!v->is_constant()) continue;
    ++constants;
    auto p = static_cast<const uint8_t*>(v->constant->raw());
    EXPECT_TRUE(p >= buf.get() && p + v->constant->nbytes() <= buf.get() + f.bytes.size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  }
  EXPECT_EQ(constants, 1);
}

TEST(TandemFormatDeathTest, WeightsAreMappedReadOnly) {
  SmallFile f = small_file("tandem_readonly");
  TandemModel m = map_tandem_file(f.dir + "/good.tandem", "cpu", {});
  Value* w = m.graph->find_value("W_MARK");
  ASSERT_TRUE(w && w->is_constant());
  EXPECT_DEATH(static_cast<float*>(w->constant->raw())[0] = 5.f, "");
}

TEST(TandemFormat, DamagedFilesAreRefusedWithAClearMessage) {
  SmallFile f = small_file("tandem_bad");
  const std::string& good = f.bytes;
  auto refused = [&](std::string bytes, ErrorCode code, std::vector<std::string> fragments) {
    write_bytes(f.path, bytes);
    expect_error([&] { Model::build_from_file(f.path); }, code, fragments);
  };
  const size_t graph_end = 128 + get<uint64_t>(good, 40);
  const size_t rec = f.tensor_record;  // dtype i32, rank u32, dim i64, offset u64, nbytes u64

  refused(good.substr(0, 60), ErrorCode::kInvalidModel, {"truncated", "60 bytes", "header"});
  refused(good.substr(0, good.size() - 1), ErrorCode::kInvalidModel, {"truncated", "header says"});
  refused(good + "extra", ErrorCode::kInvalidModel, {"5 bytes after"});
  {
    std::string b = good;
    b[b.size() - 3] ^= 0x40;  // a weight's byte
    refused(b, ErrorCode::kInvalidModel, {"is corrupt", "checksum"});
  }
  {
    std::string b = good;
    put<uint32_t>(b, 8, 3);
    refused(b, ErrorCode::kUnsupported, {"format version 3", "reads versions 1 to 2"});
  }
  {
    std::string b = good;
    std::memcpy(b.data() + 64, "gpu\0", 4);
    refused(b, ErrorCode::kUnsupported, {"target 'gpu'", "does not know"});
  }
  {
    std::string b = good;
    b[100] = 1;
    refused(b, ErrorCode::kInvalidModel, {"reserved header byte 100"});
  }
  {
    std::string b = good;  // blob section not 64-aligned
    put<uint64_t>(b, 48, get<uint64_t>(b, 48) - 8);
    put<uint64_t>(b, 56, get<uint64_t>(b, 56) + 8);
    refused(b, ErrorCode::kInvalidModel, {"sections do not fit"});
  }
  {
    std::string b = good;  // graph section overflowing the file
    put<uint64_t>(b, 40, ~uint64_t{0} - 64);
    refused(b, ErrorCode::kInvalidModel, {"sections do not fit"});
  }
  {
    std::string b = good;  // blob past the end of the blob section (at an aligned offset)
    put<uint64_t>(b, rec + 16, (get<uint64_t>(b, 56) + 63) / 64 * 64);
    reseal(b);
    refused(b, ErrorCode::kInvalidModel, {"W_MARK", "past the end of the blob section"});
  }
  {
    std::string b = good;  // a huge offset: no wrap-around in the bounds check
    put<uint64_t>(b, rec + 16, ~uint64_t{0} - 63);
    reseal(b);
    refused(b, ErrorCode::kInvalidModel, {"past the end"});
  }
  {
    std::string b = good;  // misaligned blob
    put<uint64_t>(b, rec + 16, 8);
    reseal(b);
    refused(b, ErrorCode::kInvalidModel, {"W_MARK", "not a multiple of 64"});
  }
  {
    std::string b = good;  // a shape whose byte size overflows 64 bits
    put<int64_t>(b, rec + 8, int64_t{1} << 62);
    reseal(b);
    refused(b, ErrorCode::kInvalidModel, {"W_MARK", "overflows 64 bits"});
  }
  {
    std::string b = good;  // size disagreeing with the shape
    put<uint64_t>(b, rec + 24, 20);
    reseal(b);
    refused(b, ErrorCode::kInvalidModel, {"W_MARK", "its blob is 20 bytes"});
  }
  {
    std::string b = good;  // an unknown dtype
    put<int32_t>(b, rec, 99);
    reseal(b);
    refused(b, ErrorCode::kInvalidModel, {"dtype 99"});
  }
  {
    std::string b = good;  // the graph section cut short: every count is checked against it
    put<uint64_t>(b, 40, get<uint64_t>(b, 40) - 10);
    reseal(b);
    refused(b, ErrorCode::kInvalidModel, {"graph section"});
  }
  {
    // The value table's count (after the graph name and one opset import) claiming 2^32 - 1.
    std::string b = good;
    size_t at = 128 + 4 + get<uint32_t>(b, 128);
    ASSERT_EQ(get<uint32_t>(b, at), 1u);  // one opset import: "" and its version
    at += 4 + 4 + 8;
    put<uint32_t>(b, at, 0xFFFFFFFFu);
    reseal(b);
    refused(b, ErrorCode::kInvalidModel, {"4294967295 entries"});
  }
  ASSERT_LT(graph_end, good.size());
  // Not a .tandem file at all: the ONNX loader's own refusal.
  refused("TANDEM", ErrorCode::kInvalidModel, {"not a valid ONNX model"});
  // Over the caller's size cap.
  write_bytes(f.path, good);
  Context small;
  small.max_tensor_bytes = 8;
  expect_error([&] { Model::build_from_file(f.path, small); }, ErrorCode::kInvalidModel,
               {"W_MARK", "per-tensor limit"});
}

// Version 1 (no prepacked layouts) is still read: the same file without version 2's trailing
// count of prepacked layouts.
TEST(TandemFormat, Version1FilesAreStillRead) {
  SmallFile f = small_file("tandem_v1");
  std::string b = f.bytes;
  const uint64_t graph_size = get<uint64_t>(b, 40);
  ASSERT_EQ(get<uint32_t>(b, 128 + graph_size - 4), 0u);  // no prepacked layouts
  put<uint32_t>(b, 8, 1);
  put<uint64_t>(b, 40, graph_size - 4);  // the blob section stays where it is, after padding
  reseal(b);
  write_bytes(f.path, b);
  Model m = Model::build_from_file(f.path);
  Tensor x = Tensor::from_vector(DataType::kFloat32, {3, 4}, std::vector<float>(12, 1.f), "x");
  EXPECT_EQ(m.predict({x})[0].data<float>()[7], 5.f);
}

// y = Conv(x, W) + B, x [N, 8, 10, 10], W [16, 8, 3, 3]: oneDNN wants W in a blocked layout, so
// the CPU kernel packs it (or takes the file's prepacked layout).
std::string conv_model(const std::string& dir) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 8, 10, 10});
  b.output("y", DataType::kFloat32, {-1, 16, 10, 10});
  std::vector<float> w(16 * 8 * 9), bias(16);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.11f * static_cast<float>(i));
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.1f * static_cast<float>(i);
  b.initializer("W", Tensor::from_vector(DataType::kFloat32, {16, 8, 3, 3}, w));
  b.initializer("B", Tensor::from_vector(DataType::kFloat32, {16}, bias));
  onnx::NodeProto& n = b.node("Conv", {"x", "W", "B"}, {"y"}, "conv");
  testing::add_ints_attr(n, "pads", {1, 1, 1, 1});
  testing::add_ints_attr(n, "kernel_shape", {3, 3});
  return b.save(dir);
}

struct PrepackRun {
  std::vector<Tensor> outputs;
  uint64_t from_file = 0, packed_here = 0;  // counted while the model was built and run
};

PrepackRun run_counting(const std::string& path, const ShapeMap& shapes = {}) {
  const cpu::PrepackCounts before = cpu::prepack_counts();
  PrepackRun r;
  Model m = Model::build_from_file(path, {}, shapes);
  r.outputs = m.predict(inputs_for(m.inputs()));
  const cpu::PrepackCounts after = cpu::prepack_counts();
  r.from_file = after.from_file - before.from_file;
  r.packed_here = after.packed_here - before.packed_here;
  return r;
}

void expect_same_bytes(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].shape(), b[i].shape());
    EXPECT_EQ(std::memcmp(a[i].raw(), b[i].raw(), a[i].nbytes()), 0) << a[i].name();
  }
}

TEST(TandemPrepack, ConvWeightsAreReadInPlaceFromTheFile) {
  const std::string dir = testing::temp_dir("prepack_conv");
  const std::string onnx = conv_model(dir);
  ConvertOptions opt;
  opt.batch = 2;
  ConvertSummary s = convert_to_tandem(onnx, dir + "/model.tandem", opt);
  EXPECT_EQ(s.prepack_skipped, "");
  ASSERT_EQ(s.prepacked_layouts, 1u) << "W, in oneDNN's blocked layout";
  EXPECT_EQ(s.prepacked_bytes, 16u * 8 * 9 * 4) << "16 and 8 channels need no padding";

  PrepackRun onnx_run = run_counting(onnx, {{"x", {2, 8, 10, 10}}});
  EXPECT_EQ(onnx_run.from_file, 0u);
  EXPECT_EQ(onnx_run.packed_here, 1u);
  PrepackRun file_run = run_counting(dir + "/model.tandem");
  EXPECT_EQ(file_run.from_file, 1u);
  EXPECT_EQ(file_run.packed_here, 0u) << "the kernel reordered W although the file has it";
  expect_same_bytes(file_run.outputs, onnx_run.outputs);

  // --no-prepack: plain weights only; the kernel packs its own.
  opt.prepack = false;
  ConvertSummary plain = convert_to_tandem(onnx, dir + "/plain.tandem", opt);
  EXPECT_EQ(plain.prepacked_layouts, 0u);
  EXPECT_LT(plain.file_bytes, s.file_bytes);
  PrepackRun plain_run = run_counting(dir + "/plain.tandem");
  EXPECT_EQ(plain_run.from_file, 0u);
  EXPECT_EQ(plain_run.packed_here, 1u);
  expect_same_bytes(plain_run.outputs, onnx_run.outputs);
}

// Conversions at once (a server loading two models) each record only their own graph's weights.
TEST(TandemPrepack, ConcurrentConversionsRecordOnlyTheirOwnWeights) {
  std::vector<std::string> dirs;
  for (int i = 0; i < 4; ++i)
    dirs.push_back(testing::temp_dir("prepack_concurrent_" + std::to_string(i)));
  std::vector<ConvertSummary> summaries(dirs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < dirs.size(); ++i)
    threads.emplace_back([&, i] {
      ConvertOptions opt;
      opt.batch = static_cast<int64_t>(i) + 1;
      summaries[i] = convert_to_tandem(conv_model(dirs[i]), dirs[i] + "/model.tandem", opt);
    });
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < dirs.size(); ++i) {
    EXPECT_EQ(summaries[i].prepack_skipped, "") << i;
    EXPECT_EQ(summaries[i].prepacked_layouts, 1u) << i;
    PrepackRun r = run_counting(dirs[i] + "/model.tandem");
    EXPECT_EQ(r.packed_here, 0u) << i;
  }
}

// A layout is used only under its exact key: a file whose key names another layout (made on
// another CPU, say) is still correct, the kernel packs its own.
TEST(TandemPrepack, ALayoutUnderAnotherKeyIsNotUsed) {
  const std::string dir = testing::temp_dir("prepack_key");
  const std::string onnx = conv_model(dir);
  ConvertOptions opt;
  opt.batch = 2;
  convert_to_tandem(onnx, dir + "/model.tandem", opt);
  std::string b = read_bytes(dir + "/model.tandem");
  size_t key = b.find(" -> dnnl-blocked-f32");
  ASSERT_NE(key, std::string::npos);
  b[key + 4] = 'D';  // "dnnl" -> "Dnnl" in the target layout's name
  reseal(b);
  write_bytes(dir + "/other.tandem", b);
  PrepackRun r = run_counting(dir + "/other.tandem");
  EXPECT_EQ(r.from_file, 0u);
  EXPECT_EQ(r.packed_here, 1u);
  expect_same_bytes(r.outputs, run_counting(onnx, {{"x", {2, 8, 10, 10}}}).outputs);
}

TEST(TandemPrepack, DamagedPrepackedLayoutsAreRefused) {
  const std::string dir = testing::temp_dir("prepack_bad");
  ConvertOptions opt;
  opt.batch = 2;
  convert_to_tandem(conv_model(dir), dir + "/model.tandem", opt);
  const std::string good = read_bytes(dir + "/model.tandem");
  // The record: u32 value index, str key (u32 length + bytes), u64 offset, u64 size.
  const size_t key = good.find("dnnl-blocked-f32");
  ASSERT_NE(key, std::string::npos);
  const size_t key_len = get<uint32_t>(good, key - 4);
  const size_t index = key - 8, offset = key + key_len, size = offset + 8;
  ASSERT_EQ(size + 8, 128 + get<uint64_t>(good, 40)) << "the record ends the graph section";
  const std::string path = dir + "/bad.tandem";
  auto refused = [&](auto patch, std::vector<std::string> fragments) {
    SCOPED_TRACE(fragments.back());
    std::string b = good;
    patch(b);
    reseal(b);
    write_bytes(path, b);
    expect_error([&] { Model::build_from_file(path); }, ErrorCode::kInvalidModel, fragments);
  };
  uint32_t x_index = 0;  // the input x's place in the value table (the file's order)
  {
    TandemModel m = map_tandem_file(dir + "/model.tandem", "cpu", {});
    while (m.graph->values()[x_index]->name != "x") ++x_index;
  }
  refused([&](std::string& b) { put<uint32_t>(b, index, x_index); },
          {"prepacked layout 0", "not a constant"});
  refused([&](std::string& b) { put<uint32_t>(b, index, 0xFFFFFFu); }, {"not a constant"});
  refused([&](std::string& b) { put<uint64_t>(b, offset, get<uint64_t>(b, offset) + 8); },
          {"prepacked layout of 'W'", "not a multiple of 64"});
  refused([&](std::string& b) { put<uint64_t>(b, size, uint64_t{1} << 40); },
          {"prepacked layout of 'W'", "past the end"});
  refused([&](std::string& b) { put<uint64_t>(b, size, 0); }, {"prepacked layout of 'W'", "empty"});
  refused([&](std::string& b) { put<uint32_t>(b, key - 4, 0); }, {"key of 0 bytes"});
  refused([&](std::string& b) { put<uint32_t>(b, index - 4, 2); },  // one record, counted twice
          {"graph section ends inside"});
}

// --weights fp16: W (1152 elements) is stored as float16 and widened back to float32 when read;
// B (16 elements) stays exact. No prepacked layouts: each process widens its own copy.
TEST(TandemPrepack, Fp16WeightsAreHalfTheBytesAndWidenedWhenRead) {
  const std::string dir = testing::temp_dir("fp16_weights");
  const std::string onnx = conv_model(dir);
  ConvertOptions opt;
  opt.batch = 2;
  opt.prepack = false;
  ConvertSummary fp32 = convert_to_tandem(onnx, dir + "/fp32.tandem", opt);
  opt.prepack = true;
  opt.weights = "fp16";
  ConvertSummary fp16 = convert_to_tandem(onnx, dir + "/fp16.tandem", opt);
  EXPECT_EQ(fp16.fp16_weights, 1u);
  EXPECT_EQ(fp16.prepacked_layouts, 0u);
  EXPECT_NE(fp16.prepack_skipped.find("fp16"), std::string::npos) << fp16.prepack_skipped;
  EXPECT_EQ(fp32.file_bytes - fp16.file_bytes, 16u * 8 * 9 * 2) << "W's blob halved";

  TandemModel plain = map_tandem_file(dir + "/fp32.tandem", "cpu", {});
  TandemModel half = map_tandem_file(dir + "/fp16.tandem", "cpu", {});
  const Tensor& w32 = *plain.graph->find_value("W")->constant;
  const Tensor& w16 = *half.graph->find_value("W")->constant;
  ASSERT_EQ(w16.dtype(), DataType::kFloat32);
  ASSERT_EQ(w16.shape(), w32.shape());
  for (int64_t i = 0; i < w32.numel(); ++i)
    ASSERT_EQ(w16.data<float>()[i], half_to_float(float_to_half(w32.data<float>()[i]))) << i;
  const Tensor& b16 = *half.graph->find_value("B")->constant;
  EXPECT_EQ(std::memcmp(b16.raw(), plain.graph->find_value("B")->constant->raw(), b16.nbytes()), 0);

  PrepackRun exact = run_counting(onnx, {{"x", {2, 8, 10, 10}}});
  PrepackRun rounded = run_counting(dir + "/fp16.tandem");
  EXPECT_EQ(rounded.from_file, 0u);
  ASSERT_EQ(rounded.outputs.size(), 1u);
  double max_diff = 0, max_ref = 0;
  for (int64_t i = 0; i < exact.outputs[0].numel(); ++i) {
    max_ref = std::max<double>(max_ref, std::abs(exact.outputs[0].data<float>()[i]));
    max_diff = std::max<double>(max_diff, std::abs(exact.outputs[0].data<float>()[i] -
                                                   rounded.outputs[0].data<float>()[i]));
  }
  EXPECT_GT(max_diff, 0) << "the weights were not rounded";
  EXPECT_LT(max_diff, 1e-3 * max_ref);

  // The float16 mark on a constant stored as float32 is refused.
  std::string b = read_bytes(dir + "/fp32.tandem");
  const std::string record("\x01\x00\x00\x00W\x01\x00\x00\x00", 9);  // "W", float32
  size_t at = b.find(record);
  ASSERT_NE(at, std::string::npos);
  ASSERT_EQ(b[at + 9], 3) << "shape known, constant";
  b[at + 9] = 3 | 4;
  reseal(b);
  write_bytes(dir + "/bad.tandem", b);
  expect_error([&] { Model::build_from_file(dir + "/bad.tandem"); }, ErrorCode::kInvalidModel,
               {"'W'", "stored in float16", "stored as float32"});
}

// The parallel runner's parent checks a file once (verify_tandem_checksum, by read()) and its
// workers map it without reading every byte again (Context::verify_checksum = false).
TEST(TandemFormat, ChecksumVerifiedOnceThenSkipped) {
  SmallFile f = small_file("tandem_verify_once");
  const std::string good = f.dir + "/good.tandem";
  EXPECT_NO_THROW(verify_tandem_checksum(good));
  std::string b = f.bytes;
  b[b.size() - 3] ^= 0x40;  // a weight's byte; the header's checksum unchanged
  write_bytes(f.path, b);
  expect_error([&] { verify_tandem_checksum(f.path); }, ErrorCode::kInvalidModel,
               {"is corrupt", "checksum"});
  write_bytes(f.path, f.bytes.substr(0, f.bytes.size() - 1));
  expect_error([&] { verify_tandem_checksum(f.path); }, ErrorCode::kInvalidModel,
               {"but its header says"});
  write_bytes(f.path,
              "not a model at all, but long enough to hold a header......................."
              "................................................................");
  expect_error([&] { verify_tandem_checksum(f.path); }, ErrorCode::kInvalidModel,
               {"not a .tandem file"});
  // Skipped: the damaged weight is read as it is; every other check still runs.
  write_bytes(f.path, b);
  Context trusting;
  trusting.verify_checksum = false;
  EXPECT_NO_THROW(Model::build_from_file(f.path, trusting));
  expect_error([&] { Model::build_from_file(f.path); }, ErrorCode::kInvalidModel, {"is corrupt"});
  write_bytes(f.path, f.bytes.substr(0, 60));
  expect_error([&] { Model::build_from_file(f.path, trusting); }, ErrorCode::kInvalidModel,
               {"truncated"});
}

TEST(TandemFormat, WrongTargetIsRefused) {
  SmallFile f = small_file("tandem_target", "ref");
  expect_error([&] { Model::build_from_file(f.dir + "/good.tandem"); }, ErrorCode::kUnsupported,
               {"converted for target 'ref'", "asks for target 'cpu'"});
  Context ref;
  ref.backend = "ref";
  EXPECT_NO_THROW(Model::build_from_file(f.dir + "/good.tandem", ref));
}

TEST(TandemFormat, ConvertRefusesBadOptions) {
  std::string dir = testing::temp_dir("tandem_convert_options");
  std::string onnx = small_model(dir);
  ConvertOptions opt;
  opt.input_shapes = {{"nope", {1, 4}}};
  expect_error([&] { convert_to_tandem(onnx, dir + "/m.tandem", opt); },
               ErrorCode::kInvalidArgument, {"'nope'", "no such input"});
  opt.input_shapes = {{"x", {2, 5}}};
  expect_error([&] { convert_to_tandem(onnx, dir + "/m.tandem", opt); },
               ErrorCode::kInvalidArgument, {"does not fit"});
  opt.input_shapes = {{"x", {2, 4}}};
  opt.batch = 3;  // every symbolic first dimension is fixed already
  expect_error([&] { convert_to_tandem(onnx, dir + "/m.tandem", opt); },
               ErrorCode::kInvalidArgument, {"--batch 3", "no input"});
  EXPECT_FALSE(fs::exists(dir + "/m.tandem"));
  opt = {};
  convert_to_tandem(onnx, dir + "/m.tandem", opt);
  expect_error([&] { convert_to_tandem(dir + "/m.tandem", dir + "/n.tandem", opt); },
               ErrorCode::kInvalidArgument, {"is a .tandem file already"});
}

ino_t inode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

// The cache key's build part is this binary's GNU build ID, as readelf reads it from the file.
TEST(TandemCache, KeyNamesThisBuild) {
  const std::string& id = tandem_build_id();
  EXPECT_EQ(&id, &tandem_build_id());  // computed once
  std::string readelf;
  // /proc/<pid>, not /proc/self: the latter would be readelf's own.
  const std::string cmd = "readelf -n /proc/" + std::to_string(::getpid()) + "/exe 2>/dev/null";
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) readelf.append(buf, n);
    ::pclose(p);
  }
  const size_t at = readelf.find("Build ID: ");
  if (at == std::string::npos) GTEST_SKIP() << "readelf found no build ID; the key uses " << id;
  EXPECT_EQ(id, readelf.substr(at + 10, id.size()));
  EXPECT_EQ(id.size(), 40u);  // SHA-1, GNU ld's default
}

TEST(TandemCache, MissThenHitThenACorruptEntryIsRebuilt) {
  std::string dir = testing::temp_dir("tandem_cache");
  std::string onnx = small_model(dir);
  Context ctx;
  ctx.cache_dir = dir + "/cache";
  Tensor x = Tensor::from_vector(DataType::kFloat32, {2, 4}, std::vector<float>(8, 1.f), "x");
  auto entries = [&] {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(ctx.cache_dir)) out.push_back(e.path().string());
    return out;
  };
  std::vector<Tensor> first;
  bool hit = true;
  {  // miss: converted into the cache
    TandemModel t = cached_conversion(ctx.cache_dir, onnx, {{"x", {2, 4}}}, "cpu", {}, &hit);
    EXPECT_FALSE(hit);
  }
  ASSERT_EQ(entries().size(), 1u);
  const std::string entry = entries()[0];
  const ino_t ino = inode_of(entry);
  {  // hit: the same file, mapped
    Model m = Model::build_from_file(onnx, ctx, {{"x", {2, 4}}});
    EXPECT_TRUE(mapped_in_this_process(entry));
    first = m.predict({x});
    TandemModel t = cached_conversion(ctx.cache_dir, onnx, {{"x", {2, 4}}}, "cpu", {}, &hit);
    EXPECT_TRUE(hit);
  }
  EXPECT_EQ(inode_of(entry), ino);
  // Other shapes and another target are other entries.
  Model::build_from_file(onnx, ctx, {{"x", {3, 4}}});
  Context ref = ctx;
  ref.backend = "ref";
  Model::build_from_file(onnx, ref, {{"x", {2, 4}}});
  EXPECT_EQ(entries().size(), 3u);

  // Corrupt: a flipped weight byte. Rebuilt (a new file renamed over it), never used.
  std::string bytes = read_bytes(entry);
  bytes[bytes.size() - 1] ^= 0x7f;
  write_bytes(entry, bytes);
  {
    TandemModel t = cached_conversion(ctx.cache_dir, onnx, {{"x", {2, 4}}}, "cpu", {}, &hit);
    EXPECT_FALSE(hit);
  }
  EXPECT_NE(inode_of(entry), ino);
  EXPECT_NO_THROW(map_tandem_file(entry, "cpu", {}));
  Model m = Model::build_from_file(onnx, ctx, {{"x", {2, 4}}});
  std::vector<Tensor> again = m.predict({x});
  EXPECT_EQ(std::memcmp(again[0].raw(), first[0].raw(), first[0].nbytes()), 0);
  // Truncated: rebuilt too.
  write_bytes(entry, bytes.substr(0, 100));
  EXPECT_NO_THROW(Model::build_from_file(onnx, ctx, {{"x", {2, 4}}}));
  EXPECT_NO_THROW(map_tandem_file(entry, "cpu", {}));
  // No temporary files left behind.
  for (const std::string& e : entries()) EXPECT_EQ(e.find(".tmp."), std::string::npos) << e;
}

}  // namespace
}  // namespace tandem

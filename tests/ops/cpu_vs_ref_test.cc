// The CPU backend (oneDNN) against the reference backend: tables of Conv, MatMul and Gemm cases
// run through both on the same random inputs, compared with max |cpu - ref| <= 1e-4 * (1 +
// max |ref|). Each case also says whether the CPU backend is expected to decline it (send it to
// the reference backend), so a fast path that silently stops applying fails the test too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/cpu_kernels.h"
#include "core/thread_pool.h"
#include "op_test_util.h"
#include "ops/schema.h"
#include "tandem/status.h"
#include "tandem/tensor.h"

namespace tandem {
namespace {

using testing::attr_float;
using testing::attr_int;
using testing::attr_ints;
using testing::attr_string;
using testing::max_abs_diff;
using testing::OpRun;
using testing::run_op;
using testing::run_ref_op;

Tensor random_tensor(DataType dt, const Shape& s, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Tensor t(dt, s);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = dist(gen);
    switch (dt) {
      case DataType::kFloat32:
        t.data<float>()[i] = v;
        break;
      case DataType::kFloat64:
        t.data<double>()[i] = v;
        break;
      case DataType::kInt32:
        t.data<int32_t>()[i] = static_cast<int32_t>(std::lround(4 * v));
        break;
      default:
        ADD_FAILURE() << "random_tensor: unsupported dtype";
    }
  }
  return t;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (t.dtype()) {
      case DataType::kFloat32:
        m = std::max(m, std::abs(double(t.data<float>()[i])));
        break;
      case DataType::kFloat64:
        m = std::max(m, std::abs(t.data<double>()[i]));
        break;
      case DataType::kInt32:
        m = std::max(m, std::abs(double(t.data<int32_t>()[i])));
        break;
      default:
        break;
    }
  }
  return m;
}

struct Outcome {
  int cases = 0, declined = 0;
};

// Runs `op` on the CPU and the reference backends and compares; returns whether the CPU
// backend declined it. Both runs call compute twice, so cached plans and prepacked weights are
// used on the second call.
bool compare(const std::string& name, const std::string& op, const std::vector<Tensor>& inputs,
             const std::map<std::string, Attribute>& attrs, const std::vector<bool>& constant,
             int threads = 2, int opset = 17, int64_t expected_fallbacks = 0) {
  SCOPED_TRACE(name);
  const int64_t fallbacks_before = cpu::reference_fallbacks();
  OpRun cpu = run_op(cpu_backend(), op, inputs, attrs, 1, opset, constant, threads, 2);
  std::vector<Tensor> ref = run_ref_op(op, inputs, attrs, 1, opset);
  const double diff = max_abs_diff(cpu.outputs.at(0), ref.at(0));
  const double tol = 1e-4 * (1 + max_abs(ref[0]));
  EXPECT_LE(diff, tol) << name << ": max |cpu - ref| = " << diff;
  // A node the CPU backend accepts must really run on oneDNN, not hand each call over.
  if (cpu.backend == "cpu") {
    // (expected_fallbacks: calls the kernel is meant to hand over, e.g. an A that broadcasts.)
    EXPECT_EQ(cpu::reference_fallbacks() - fallbacks_before, expected_fallbacks)
        << name << ": ran on the reference kernel";
  }
  return cpu.backend != "cpu";
}

// ---- Conv ----------------------------------------------------------------------------------

struct ConvCase {
  std::string name;
  Shape x, w;
  bool bias = false;
  int64_t group = 1;
  std::vector<int64_t> strides, dilations, pads;
  std::string auto_pad;
  bool const_w = true;
  DataType dtype = DataType::kFloat32;
  bool expect_declined = false;
};

const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cases = {
      {"3x3 pad 1 bias", {1, 3, 8, 8}, {4, 3, 3, 3}, true, 1, {}, {}, {1, 1, 1, 1}},
      {"3x3 batch 3 odd 7x5 no bias", {3, 4, 7, 5}, {6, 4, 3, 3}, false},
      {"1x1 bias", {2, 16, 5, 7}, {8, 16, 1, 1}, true},
      {"1x1 stride 3", {1, 3, 9, 9}, {2, 3, 1, 1}, false, 1, {3, 3}},
      {"depthwise 3x3 pad 1 bias", {1, 8, 9, 9}, {8, 1, 3, 3}, true, 8, {}, {}, {1, 1, 1, 1}},
      {"depthwise 3x3 stride 2 batch 3",
       {3, 6, 10, 7},
       {6, 1, 3, 3},
       true,
       6,
       {2, 2},
       {},
       {1, 1, 1, 1}},
      {"depthwise multiplier 2", {2, 4, 7, 5}, {8, 1, 3, 3}, false, 4},
      {"group 2", {1, 4, 6, 6}, {6, 2, 3, 3}, true, 2},
      {"group 4 of 8x8 stride 2", {1, 32, 9, 9}, {32, 8, 3, 3}, true, 4, {2, 2}, {}, {1, 1, 1, 1}},
      {"strides 2x1 asymmetric pads",
       {1, 3, 11, 7},
       {5, 3, 3, 2},
       true,
       1,
       {2, 1},
       {},
       {0, 1, 2, 0}},
      {"dilation 2 pad 2", {1, 3, 10, 9}, {4, 3, 3, 3}, false, 1, {}, {2, 2}, {2, 2, 2, 2}},
      {"dilation 2x3 stride 2", {2, 3, 13, 11}, {4, 3, 2, 3}, true, 1, {2, 2}, {2, 3}},
      {"SAME_UPPER stride 2", {1, 3, 7, 5}, {4, 3, 3, 3}, true, 1, {2, 2}, {}, {}, "SAME_UPPER"},
      {"SAME_LOWER even kernel", {1, 3, 8, 6}, {4, 3, 4, 4}, false, 1, {}, {}, {}, "SAME_LOWER"},
      {"SAME_UPPER even kernel", {1, 3, 8, 6}, {4, 3, 4, 2}, true, 1, {}, {}, {}, "SAME_UPPER"},
      {"VALID stride 2", {1, 2, 7, 5}, {3, 2, 3, 2}, true, 1, {2, 2}, {}, {}, "VALID"},
      {"depthwise dilated SAME_UPPER",
       {1, 8, 9, 9},
       {8, 1, 3, 3},
       true,
       8,
       {},
       {2, 2},
       {},
       "SAME_UPPER"},
      {"kernel covers input", {1, 3, 5, 5}, {2, 3, 5, 5}, true},
      {"32->64 channels 14x14", {1, 32, 14, 14}, {64, 32, 3, 3}, true, 1, {}, {}, {1, 1, 1, 1}},
      {"7x7 stride 2 pad 3 (stem)",
       {1, 3, 23, 19},
       {16, 3, 7, 7},
       true,
       1,
       {2, 2},
       {},
       {3, 3, 3, 3}},
      {"W not constant", {2, 3, 8, 8}, {4, 3, 3, 3}, true, 1, {}, {}, {1, 1, 1, 1}, "", false},
      {"depthwise W not constant",
       {1, 8, 9, 9},
       {8, 1, 3, 3},
       true,
       8,
       {},
       {},
       {1, 1, 1, 1},
       "",
       false},
      // Declined: 1-D and 3-D convs, float64.
      {"1-D", {1, 3, 10}, {4, 3, 3}, true, 1, {}, {}, {}, "", true, DataType::kFloat32, true},
      {"3-D",
       {1, 2, 4, 5, 6},
       {3, 2, 2, 2, 2},
       true,
       1,
       {},
       {},
       {},
       "",
       true,
       DataType::kFloat32,
       true},
      {"float64",
       {1, 3, 6, 6},
       {4, 3, 3, 3},
       true,
       1,
       {},
       {},
       {},
       "",
       true,
       DataType::kFloat64,
       true},
  };
  return cases;
}

TEST(CpuVsRef, ConvTable) {
  Outcome out;
  uint32_t seed = 100;
  for (const ConvCase& c : conv_cases()) {
    std::map<std::string, Attribute> attrs;
    if (c.group != 1) attrs["group"] = attr_int(c.group);
    if (!c.strides.empty()) attrs["strides"] = attr_ints(c.strides);
    if (!c.dilations.empty()) attrs["dilations"] = attr_ints(c.dilations);
    if (!c.pads.empty()) attrs["pads"] = attr_ints(c.pads);
    if (!c.auto_pad.empty()) attrs["auto_pad"] = attr_string(c.auto_pad);
    std::vector<Tensor> inputs{random_tensor(c.dtype, c.x, seed++),
                               random_tensor(c.dtype, c.w, seed++)};
    if (c.bias) inputs.push_back(random_tensor(c.dtype, {c.w[0]}, seed++));
    const bool declined =
        compare("Conv " + c.name, "Conv", inputs, attrs, {false, c.const_w, true});
    EXPECT_EQ(declined, c.expect_declined) << "Conv " << c.name;
    ++out.cases;
    out.declined += declined;
  }
  std::cout << "[ cpu-vs-ref ] Conv: " << out.cases << " cases, " << out.declined
            << " declined by the CPU backend\n";
}

// ---- MatMul ---------------------------------------------------------------------------------

struct MatMulCase {
  Shape a, b;
  bool const_b = true;
  DataType dtype = DataType::kFloat32;
  bool expect_declined = false;
};

TEST(CpuVsRef, MatMulTable) {
  const std::vector<MatMulCase> cases = {
      {{3, 4}, {4, 5}},
      {{3, 4}, {4, 5}, false},
      {{1, 1}, {1, 1}},
      {{7, 5}, {5, 3}},
      {{2, 1, 5, 7}, {3, 7, 4}},
      {{2, 1, 5, 7}, {3, 7, 4}, false},
      {{4, 3, 5}, {5, 6}},
      {{5, 6}, {2, 6, 3}, false},
      {{2, 3, 4, 5}, {2, 3, 5, 2}, false},
      {{2, 3, 4, 5}, {1, 3, 5, 2}},
      {{64, 128}, {128, 96}},
      {{1, 128}, {128, 1000}},
      {{2, 3}, {3, 1}},
      // B without batch dims: A's leading dims fold into M (one GEMM), e.g. [seq, batch, dim].
      {{9, 1, 12}, {12, 7}},
      {{3, 4, 5, 6}, {1, 1, 6, 5}},
      {{9, 1, 12}, {12, 7}, false},
      // Declined: 1-D operands, int32.
      {{5}, {5, 3}, true, DataType::kFloat32, true},
      {{3, 5}, {5}, true, DataType::kFloat32, true},
      {{3, 4}, {4, 5}, true, DataType::kInt32, true},
  };
  Outcome out;
  uint32_t seed = 500;
  for (const MatMulCase& c : cases) {
    const std::string name = "MatMul " + shape_str(c.a) + " x " + shape_str(c.b) +
                             (c.const_b ? " const B" : "") + " " + dtype_name(c.dtype);
    std::vector<Tensor> inputs{random_tensor(c.dtype, c.a, seed++),
                               random_tensor(c.dtype, c.b, seed++)};
    const bool declined = compare(name, "MatMul", inputs, {}, {false, c.const_b});
    EXPECT_EQ(declined, c.expect_declined) << name;
    ++out.cases;
    out.declined += declined;
  }
  std::cout << "[ cpu-vs-ref ] MatMul: " << out.cases << " cases, " << out.declined
            << " declined by the CPU backend\n";
}

// ---- Gemm -----------------------------------------------------------------------------------

struct GemmCase {
  Shape a, b;
  int64_t trans_a = 0, trans_b = 0;
  float alpha = 1.0f, beta = 1.0f;
  bool has_c = false;
  Shape c;
  bool const_b = true;
};

TEST(CpuVsRef, GemmTable) {
  const std::vector<GemmCase> cases = {
      {{3, 4}, {4, 5}},
      {{3, 4}, {5, 4}, 0, 1, 1.0f, 1.0f, true, {5}},  // a fully connected layer
      {{3, 4}, {5, 4}, 0, 1, 1.0f, 1.0f, true, {5}, false},
      {{4, 3}, {4, 5}, 1, 0, 0.5f, 2.0f, true, {3, 5}},
      {{4, 3}, {5, 4}, 1, 1, 1.0f, 1.0f, true, {3, 1}},
      {{4, 3}, {5, 4}, 1, 1, 1.0f, 1.0f, true, {3, 1}, false},
      {{3, 4}, {4, 5}, 0, 0, 1.0f, 1.0f, true, {}},
      {{3, 4}, {4, 5}, 0, 0, 1.0f, 0.25f, true, {1}},
      {{3, 4}, {4, 5}, 0, 0, 1.5f, 1.0f, true, {1, 5}},
      {{3, 4}, {4, 5}, 0, 0, 1.0f, 1.0f, true, {3, 5}},
      {{3, 4}, {4, 5}, 0, 0, 1.0f, 0.0f, true, {3, 5}},
      {{2, 7}, {5, 7}, 0, 1, 2.0f, 1.0f},
      {{32, 256}, {128, 256}, 0, 1, 1.0f, 1.0f, true, {128}},
      {{1, 9}, {9, 1}, 0, 0, -1.0f, -1.0f, true, {1, 1}, false},
  };
  Outcome out;
  uint32_t seed = 900;
  for (const GemmCase& c : cases) {
    const std::string name =
        "Gemm " + shape_str(c.a) + " x " + shape_str(c.b) + " tA=" + std::to_string(c.trans_a) +
        " tB=" + std::to_string(c.trans_b) + " alpha=" + std::to_string(c.alpha) +
        " beta=" + std::to_string(c.beta) + (c.has_c ? " C" + shape_str(c.c) : "") +
        (c.const_b ? " const B" : "");
    std::map<std::string, Attribute> attrs{{"transA", attr_int(c.trans_a)},
                                           {"transB", attr_int(c.trans_b)},
                                           {"alpha", attr_float(c.alpha)},
                                           {"beta", attr_float(c.beta)}};
    std::vector<Tensor> inputs{random_tensor(DataType::kFloat32, c.a, seed++),
                               random_tensor(DataType::kFloat32, c.b, seed++)};
    if (c.has_c) inputs.push_back(random_tensor(DataType::kFloat32, c.c, seed++));
    const bool declined = compare(name, "Gemm", inputs, attrs, {false, c.const_b, true});
    EXPECT_FALSE(declined) << name;
    ++out.cases;
    out.declined += declined;
  }
  std::cout << "[ cpu-vs-ref ] Gemm: " << out.cases << " cases, " << out.declined
            << " declined by the CPU backend\n";
}

// ---- Softmax, LogSoftmax --------------------------------------------------------------------

// `t` with every float32 element multiplied by `k` (large values test max-subtraction).
Tensor scaled(Tensor t, float k) {
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] *= k;
  return t;
}

struct SoftmaxCase {
  Shape x;
  int64_t axis = 0;
  bool has_axis = false;
  int opset = 17;
  float scale = 1.0f;
  DataType dtype = DataType::kFloat32;
  bool expect_declined = false;
};

TEST(CpuVsRef, SoftmaxTable) {
  const std::vector<SoftmaxCase> cases = {
      {{3, 5, 7}, -1, true},
      {{3, 5, 7}, 0, true},
      {{3, 5, 7}, 1, true},
      {{2, 3, 4, 5}, -1, true},
      {{2, 3, 4, 5}, 0, true},
      {{2, 3, 4, 5}, 1, true},
      {{2, 3, 4, 5}, 2, true},
      {{4, 9}},                            // default axis -1
      {{1, 1000}},                         // a classifier's logits
      {{7}, 0, true},                      // rank 1
      {{2, 1, 5}, 1, true},                // axis of size 1
      {{3, 5, 7}, -1, true, 17, 1000.0f},  // large values: stability
      {{2, 3, 4, 5}, 1, true, 17, 500.0f},
      // opset < 13: coerce to 2-D [prod(dims < axis), prod(dims >= axis)].
      {{3, 5, 7}, 2, true, 11},
      {{3, 5, 7}, 1, true, 11},
      {{2, 3, 4, 5}, 0, true, 11},
      {{2, 3, 4, 5}, 0, false, 11},  // default axis 1
      {{3, 5, 7}, -1, true, 11, 1000.0f},
      // Declined: float64.
      {{3, 5}, -1, true, 17, 1.0f, DataType::kFloat64, true},
  };
  Outcome out;
  uint32_t seed = 1300;
  for (const std::string op : {"Softmax", "LogSoftmax"}) {
    for (const SoftmaxCase& c : cases) {
      const std::string name = op + " " + shape_str(c.x) +
                               (c.has_axis ? " axis=" + std::to_string(c.axis) : "") + " opset " +
                               std::to_string(c.opset) + " x" + std::to_string(c.scale) + " " +
                               dtype_name(c.dtype);
      std::map<std::string, Attribute> attrs;
      if (c.has_axis) attrs["axis"] = attr_int(c.axis);
      Tensor x = random_tensor(c.dtype, c.x, seed++);
      if (c.dtype == DataType::kFloat32) x = scaled(std::move(x), c.scale);
      const bool declined = compare(name, op, {x}, attrs, {false}, 2, c.opset);
      EXPECT_EQ(declined, c.expect_declined) << name;
      ++out.cases;
      out.declined += declined;
    }
  }
  std::cout << "[ cpu-vs-ref ] Softmax/LogSoftmax: " << out.cases << " cases, " << out.declined
            << " declined by the CPU backend\n";
}

// ---- Elementwise activations ----------------------------------------------------------------

struct EltwiseCase {
  std::string op;
  Shape x;
  std::map<std::string, Attribute> attrs;
  float scale = 4.0f;     // inputs in [-scale, scale]
  bool positive = false;  // inputs |x| + 0.01 (Log, Sqrt)
  DataType dtype = DataType::kFloat32;
  bool expect_declined = false;
};

TEST(CpuVsRef, EltwiseTable) {
  const std::vector<EltwiseCase> cases = {
      {"Sigmoid", {2, 3, 5, 7}},
      {"Sigmoid", {1}, {}, 30.0f},
      {"Sigmoid", {1000}, {}, 100.0f},
      {"Tanh", {3, 17}},
      {"Relu", {2, 3, 4, 5}},
      {"Relu", {}},
      {"LeakyRelu", {5, 7}},
      {"LeakyRelu", {5, 7}, {{"alpha", attr_float(0.2f)}}},
      {"Elu", {4, 9}},
      {"Elu", {4, 9}, {{"alpha", attr_float(0.5f)}}},
      {"Exp", {3, 11}},
      {"Sqrt", {2, 3, 7}, {}, 10.0f, true},
      {"Abs", {129}},
      {"HardSwish", {2, 5, 9}, {}, 6.0f},
      {"Softplus", {4, 13}, {}, 30.0f},
      // Erf: a vector loop (gelu.cc); see ErfTable for its special values.
      {"Erf", {3, 4}},
      // Declined: float64, int32; Log (oneDNN's is not exact enough).
      {"Log", {3, 11}, {}, 10.0f, true, DataType::kFloat32, true},
      {"Sigmoid", {3, 4}, {}, 4.0f, false, DataType::kFloat64, true},
      {"Relu", {3, 4}, {}, 4.0f, false, DataType::kInt32, true},
  };
  Outcome out;
  uint32_t seed = 1700;
  for (const EltwiseCase& c : cases) {
    const std::string name = c.op + " " + shape_str(c.x) + " " + dtype_name(c.dtype);
    Tensor x = random_tensor(c.dtype, c.x, seed++);
    if (c.dtype == DataType::kFloat32) {
      x = scaled(std::move(x), c.scale);
      if (c.positive)
        for (int64_t i = 0; i < x.numel(); ++i)
          x.data<float>()[i] = std::abs(x.data<float>()[i]) + 0.01f;
    }
    const bool declined = compare(name, c.op, {x}, c.attrs, {false});
    EXPECT_EQ(declined, c.expect_declined) << name;
    ++out.cases;
    out.declined += declined;
  }
  std::cout << "[ cpu-vs-ref ] Eltwise: " << out.cases << " cases, " << out.declined
            << " declined by the CPU backend\n";
}

// Clip: attribute bounds (opset 6), constant input bounds (opset 13), either bound omitted, and
// bounds computed at run time (declined).
TEST(CpuVsRef, ClipTable) {
  auto scalar = [](float v) {
    Tensor t(DataType::kFloat32, Shape{});
    t.data<float>()[0] = v;
    return t;
  };
  Tensor x = scaled(random_tensor(DataType::kFloat32, {3, 4, 5}, 77), 3.0f);
  const Tensor none;  // an omitted optional input
  EXPECT_FALSE(compare("Clip opset 6 attrs", "Clip", {x},
                       {{"min", attr_float(-0.5f)}, {"max", attr_float(1.5f)}}, {false}, 2, 6));
  EXPECT_FALSE(
      compare("Clip opset 6 min only", "Clip", {x}, {{"min", attr_float(0.0f)}}, {false}, 2, 6));
  EXPECT_FALSE(compare("Clip constant bounds", "Clip", {x, scalar(-1.0f), scalar(2.0f)}, {},
                       {false, true, true}, 2, 13));
  EXPECT_FALSE(
      compare("Clip max only", "Clip", {x, none, scalar(0.25f)}, {}, {false, true, true}, 2, 13));
  EXPECT_FALSE(compare("Clip no bounds", "Clip", {x}, {}, {false}, 2, 13));
  EXPECT_TRUE(compare("Clip bounds at run time", "Clip", {x, scalar(-1.0f), scalar(2.0f)}, {},
                      {false, false, false}, 2, 13));
  EXPECT_TRUE(compare("Clip min > max", "Clip", {x, scalar(2.0f), scalar(-1.0f)}, {},
                      {false, true, true}, 2, 13));
}

// ---- Add, Sub, Mul, Div ---------------------------------------------------------------------

struct BinaryCase {
  Shape a, b;
  bool expect_declined = false;  // at run time (only A broadcasts in Sub/Div, or both do)
  DataType dtype = DataType::kFloat32;
};

TEST(CpuVsRef, BinaryTable) {
  const std::vector<BinaryCase> cases = {
      {{2, 3, 4, 5}, {2, 3, 4, 5}},
      {{2, 3, 4, 5}, {1, 3, 1, 1}},
      {{2, 3, 4, 5}, {3, 1, 1}},
      {{4, 5}, {5}},
      {{3, 7}, {1}},
      {{3, 7}, {}},
      {{}, {}},
      {{1}, {1}},
      {{7, 1}, {7, 1}},
      {{2, 17, 9}, {2, 17, 1}},
      {{5}, {4, 5}},  // A broadcasts
      {{1, 3, 1, 1}, {2, 3, 4, 5}},
      {{3, 1}, {1, 4}},  // both broadcast
      {{2, 1, 4, 1}, {1, 3, 1, 5}},
      {{1, 1, 33}, {9, 7, 1}},
      {{1}, {2, 3, 4}},
      {{16, 1, 1, 77}, {16, 4, 77, 77}},  // attention mask
      {{2, 64, 300}, {300}},              // bias over rows, above the parallel threshold
      {{2, 48, 32, 32}, {48, 1, 1}},      // per-channel, above the parallel threshold
      {{2, 3}, {2, 3}, false, DataType::kInt32},
  };
  Outcome out;
  uint32_t seed = 2100;
  for (const std::string op : {"Add", "Sub", "Mul", "Div"}) {
    for (const BinaryCase& c : cases) {
      const std::string name =
          op + " " + shape_str(c.a) + " , " + shape_str(c.b) + " " + dtype_name(c.dtype);
      Tensor a = random_tensor(c.dtype, c.a, seed++);
      Tensor b = random_tensor(c.dtype, c.b, seed++);
      if (op == "Div") {  // keep divisors away from 0
        if (c.dtype == DataType::kFloat32) {
          for (int64_t i = 0; i < b.numel(); ++i)
            b.data<float>()[i] =
                std::copysign(0.5f + std::abs(b.data<float>()[i]), b.data<float>()[i]);
        } else {
          for (int64_t i = 0; i < b.numel(); ++i) b.data<int32_t>()[i] = i % 3 + 1;
        }
      }
      // Every float32 broadcast runs on the fast path; not-float32 is declined by the factory.
      const bool declined = compare(name, op, {a, b}, {}, {false, false}, 2, 17, 0);
      EXPECT_EQ(declined, c.dtype != DataType::kFloat32) << name;
      ++out.cases;
      out.declined += declined;
    }
  }
  std::cout << "[ cpu-vs-ref ] Add/Sub/Mul/Div: " << out.cases << " cases, " << out.declined
            << " declined by the CPU backend\n";
}

// The thread count of the kernel context (1 and 3) must not change results beyond rounding.
TEST(CpuVsRef, ThreadCounts) {
  std::vector<Tensor> conv_in{random_tensor(DataType::kFloat32, {2, 16, 12, 12}, 1),
                              random_tensor(DataType::kFloat32, {24, 16, 3, 3}, 2),
                              random_tensor(DataType::kFloat32, {24}, 3)};
  std::map<std::string, Attribute> conv_attrs{{"pads", attr_ints({1, 1, 1, 1})}};
  std::vector<Tensor> mm_in{random_tensor(DataType::kFloat32, {3, 40, 50}, 4),
                            random_tensor(DataType::kFloat32, {50, 30}, 5)};
  for (int threads : {1, 3}) {
    EXPECT_FALSE(compare("Conv threads " + std::to_string(threads), "Conv", conv_in, conv_attrs,
                         {false, true, true}, threads));
    EXPECT_FALSE(compare("MatMul threads " + std::to_string(threads), "MatMul", mm_in, {},
                         {false, true}, threads));
  }
}

// One kernel instance across calls: a W that is not constant must be re-read on every call (no
// stale prepacked copy), and a constant W must stay right when the input shape changes (a new
// plan per shape). Built by hand so the same kernel object is reused.
TEST(CpuVsRef, ConvKernelReuse) {
  for (bool const_w : {false, true}) {
    SCOPED_TRACE(const_w ? "constant W" : "W computed at run time");
    Graph g;
    Tensor w1 = random_tensor(DataType::kFloat32, {4, 3, 3, 3}, 11);
    Tensor w2 = random_tensor(DataType::kFloat32, {4, 3, 3, 3}, 12);
    Value* x = g.add_value("x");
    Value* w = g.add_value("w");
    Value* y = g.add_value("y");
    x->dtype = w->dtype = y->dtype = DataType::kFloat32;
    w->shape = {4, 3, 3, 3};
    w->shape_known = true;
    if (const_w) w->constant = w1;
    Node* node = g.add_node("Conv", "conv", {x, w}, {y});
    node->opset = 17;
    node->attrs["pads"] = attr_ints({1, 1, 1, 1});
    const KernelFactory* f = cpu_backend().kernels().find("", "Conv");
    ASSERT_NE(f, nullptr);
    std::unique_ptr<Kernel> k = (*f)(*node);
    ASSERT_NE(k, nullptr);
    ThreadPool pool(2);
    KernelContext ctx{*node, pool};
    // Calls: (x shape, W): the second W only when W is not constant.
    const std::vector<std::pair<Shape, const Tensor*>> calls = {{{1, 3, 8, 8}, &w1},
                                                                {{1, 3, 8, 8}, const_w ? &w1 : &w2},
                                                                {{2, 3, 5, 9}, &w1},
                                                                {{1, 3, 8, 8}, &w1}};
    uint32_t seed = 20;
    for (const auto& [xs, wt] : calls) {
      Tensor xt = random_tensor(DataType::kFloat32, xs, seed++);
      std::vector<Tensor> ref = run_ref_op("Conv", {xt, *wt}, node->attrs);
      Tensor yt(DataType::kFloat32, ref[0].shape());
      std::vector<const Tensor*> ins{&xt, wt};
      std::vector<Tensor*> outs{&yt};
      k->compute(ctx, ins, outs);
      EXPECT_LE(max_abs_diff(yt, ref[0]), 1e-4 * (1 + max_abs(ref[0]))) << shape_str(xs);
    }
  }
}

// ---- Resize ---------------------------------------------------------------------------------

struct ResizeCase {
  std::string name;
  Shape x;
  std::vector<float> scales;  // empty: use sizes
  std::vector<int64_t> sizes;
  std::map<std::string, Attribute> attrs;
  int64_t expected_fallbacks = 0;  // compute calls handed to the reference kernel
  std::vector<float> roi = {};
};

TEST(CpuVsRef, ResizeTable) {
  auto a = [](std::initializer_list<std::pair<const std::string, Attribute>> l) {
    return std::map<std::string, Attribute>(l);
  };
  const std::vector<ResizeCase> cases = {
      {"nearest 2x (the UNet's upsample)",
       {1, 5, 7, 9},
       {1, 1, 2, 2},
       {},
       a({{"mode", attr_string("nearest")}})},
      {"nearest asymmetric floor 3x",
       {2, 3, 4, 5},
       {1, 1, 3, 3},
       {},
       a({{"mode", attr_string("nearest")},
          {"coordinate_transformation_mode", attr_string("asymmetric")},
          {"nearest_mode", attr_string("floor")}})},
      {"nearest downscale 0.6 ceil",
       {1, 2, 10, 11},
       {1, 1, 0.6f, 0.6f},
       {},
       a({{"mode", attr_string("nearest")}, {"nearest_mode", attr_string("ceil")}})},
      {"nearest sizes, every axis",
       {2, 3, 5, 4},
       {},
       {3, 2, 9, 7},
       a({{"mode", attr_string("nearest")},
          {"coordinate_transformation_mode", attr_string("align_corners")},
          {"nearest_mode", attr_string("round_prefer_ceil")}})},
      {"linear half_pixel 2x",
       {1, 4, 6, 7},
       {1, 1, 2, 2},
       {},
       a({{"mode", attr_string("linear")}})},
      {"linear align_corners sizes",
       {2, 3, 5, 5},
       {},
       {2, 3, 11, 8},
       a({{"mode", attr_string("linear")},
          {"coordinate_transformation_mode", attr_string("align_corners")}})},
      {"linear pytorch_half_pixel downscale",
       {1, 2, 9, 13},
       {},
       {1, 2, 4, 5},
       a({{"mode", attr_string("linear")},
          {"coordinate_transformation_mode", attr_string("pytorch_half_pixel")}})},
      {"linear antialias downscale (opset 18)",
       {1, 2, 12, 12},
       {1, 1, 0.4f, 0.5f},
       {},
       a({{"mode", attr_string("linear")}, {"antialias", attr_int(1)}})},
      {"cubic 1.5x exclude_outside",
       {1, 3, 6, 5},
       {1, 1, 1.5f, 1.5f},
       {},
       a({{"mode", attr_string("cubic")}, {"exclude_outside", attr_int(1)}})},
      {"linear 3-D", {2, 5, 7}, {1, 2, 1.5f}, {}, a({{"mode", attr_string("linear")}})},
      {"nearest 1-D", {9}, {2.5f}, {}, a({{"mode", attr_string("nearest")}})},
      {"tf_crop_and_resize outside: reference",
       {1, 1, 4, 4},
       {},
       {1, 1, 3, 3},
       a({{"mode", attr_string("linear")},
          {"coordinate_transformation_mode", attr_string("tf_crop_and_resize")},
          {"extrapolation_value", attr_float(7.5f)}}),
       2,
       {0, 0, -0.5f, -0.5f, 1, 1, 1.5f, 1.5f}},
  };
  uint32_t seed = 5100;
  for (const ResizeCase& c : cases) {
    Tensor x = random_tensor(DataType::kFloat32, c.x, seed++);
    const int64_t rank = static_cast<int64_t>(c.x.size());
    Tensor roi =
        c.roi.empty() ? Tensor() : Tensor::from_vector(DataType::kFloat32, {2 * rank}, c.roi);
    Tensor scales =
        c.scales.empty() ? Tensor() : Tensor::from_vector(DataType::kFloat32, {rank}, c.scales);
    Tensor sizes =
        c.sizes.empty() ? Tensor() : Tensor::from_vector(DataType::kInt64, {rank}, c.sizes);
    const bool declined = compare(c.name, "Resize", {x, roi, scales, sizes}, c.attrs,
                                  {false, true, true, true}, 2, 18, c.expected_fallbacks);
    EXPECT_FALSE(declined) << c.name;
  }
}

// ---- Transpose ------------------------------------------------------------------------------

TEST(CpuVsRef, TransposeTable) {
  struct Case {
    Shape x;
    std::vector<int64_t> perm;  // empty: the default (reversed axes)
    DataType dtype = DataType::kFloat32;
  };
  const std::vector<Case> cases = {
      {{2, 3, 4, 5}, {0, 2, 3, 1}},        // NCHW -> NHWC
      {{2, 5, 7, 3}, {0, 3, 1, 2}},        // NHWC -> NCHW
      {{1, 37, 2, 19}, {0, 2, 1, 3}},      // heads split: last axis stays
      {{3, 33, 17}, {}},                   // default perm, odd sizes (partial tiles)
      {{2, 16, 77, 6}, {0, 1, 3, 2}},      // K^T
      {{5, 1, 9, 1, 4}, {4, 1, 2, 0, 3}},  // size-1 axes
      {{2, 3, 4}, {0, 1, 2}},              // identity perm
      {{2, 3, 4, 5}, {1, 0, 3, 2}, DataType::kInt32},
      {{6, 7}, {1, 0}, DataType::kFloat64},
      {{64, 130}, {1, 0}},  // above the threading grain
  };
  uint32_t seed = 6100;
  for (const Case& c : cases) {
    const std::string name =
        "Transpose " + shape_str(c.x) + " perm " + shape_str(c.perm) + " " + dtype_name(c.dtype);
    std::map<std::string, Attribute> attrs;
    if (!c.perm.empty()) attrs["perm"] = attr_ints(c.perm);
    Tensor x = random_tensor(c.dtype, c.x, seed++);
    EXPECT_FALSE(compare(name, "Transpose", {x}, attrs, {false}, 2, 17, 0)) << name;
    // Exact: a transpose moves values.
    OpRun cpu = run_op(cpu_backend(), "Transpose", {x}, attrs, 1, 17, {false}, 2, 1);
    std::vector<Tensor> ref = run_ref_op("Transpose", {x}, attrs, 1, 17);
    EXPECT_EQ(max_abs_diff(cpu.outputs[0], ref[0]), 0.0) << name;
  }
}

// ---- ConvTranspose ---------------------------------------------------------------------------

struct ConvTransposeCase {
  std::string name;
  Shape x, w;  // W: [C_in, C_out / group, kH, kW]
  bool bias = false;
  int64_t group = 1;
  std::vector<int64_t> strides, dilations, pads, output_padding, output_shape;
  std::string auto_pad;
  bool const_w = true;
  int64_t fallbacks = 0;  // compute calls (of 2) meant for the reference kernel
  DataType dtype = DataType::kFloat32;
  bool expect_declined = false;
};

TEST(CpuVsRef, ConvTransposeTable) {
  const std::vector<ConvTransposeCase> cases = {
      {"3x3 stride 1 bias", {1, 3, 5, 5}, {3, 4, 3, 3}, true},
      {"stride 2 pads 1 output_padding 1",
       {1, 4, 7, 5},
       {4, 3, 3, 3},
       true,
       1,
       {2, 2},
       {},
       {1, 1, 1, 1},
       {1, 1}},
      {"stride 3 batch 2 odd no bias", {2, 3, 5, 4}, {3, 2, 3, 2}, false, 1, {3, 3}},
      {"stride 3 output_padding 2x1 asymmetric pads",
       {1, 2, 4, 5},
       {2, 3, 4, 4},
       true,
       1,
       {3, 3},
       {},
       {2, 1, 2, 2},
       {2, 1}},
      {"group 2", {1, 4, 6, 6}, {4, 3, 3, 3}, true, 2},
      {"group 3 strides 2x1 asymmetric pads",
       {1, 6, 7, 5},
       {6, 2, 3, 3},
       true,
       3,
       {2, 1},
       {},
       {0, 1, 2, 0}},
      {"depthwise stride 2 batch 2", {2, 8, 5, 7}, {8, 1, 4, 4}, true, 8, {2, 2}, {}, {1, 1, 1, 1}},
      {"depthwise multiplier 2", {1, 4, 5, 5}, {4, 2, 3, 3}, false, 4},
      {"dilation 2 pads", {1, 3, 6, 5}, {3, 4, 3, 3}, true, 1, {}, {2, 2}, {1, 2, 1, 0}},
      {"dilation 2x3 stride 2 batch 2", {2, 3, 5, 4}, {3, 2, 2, 3}, false, 1, {2, 2}, {2, 3}},
      {"SAME_UPPER stride 2",
       {1, 3, 5, 4},
       {3, 4, 3, 3},
       true,
       1,
       {2, 2},
       {},
       {},
       {},
       {},
       "SAME_UPPER"},
      {"SAME_LOWER stride 2 even kernel",
       {1, 3, 5, 4},
       {3, 4, 4, 4},
       false,
       1,
       {2, 2},
       {},
       {},
       {},
       {},
       "SAME_LOWER"},
      {"SAME_UPPER stride 3",
       {1, 2, 3, 5},
       {2, 2, 4, 4},
       true,
       1,
       {3, 3},
       {},
       {},
       {},
       {},
       "SAME_UPPER"},
      {"VALID stride 2", {1, 2, 4, 3}, {2, 3, 3, 3}, true, 1, {2, 2}, {}, {}, {}, {}, "VALID"},
      {"output_shape spatial", {1, 3, 5, 5}, {3, 2, 3, 3}, true, 1, {2, 2}, {}, {}, {}, {10, 10}},
      {"output_shape full",
       {1, 3, 5, 5},
       {3, 2, 3, 3},
       false,
       1,
       {2, 2},
       {},
       {},
       {},
       {1, 2, 11, 9}},
      {"1x1 stride 2", {1, 8, 4, 4}, {8, 5, 1, 1}, true, 1, {2, 2}},
      {"32->16 channels 4x4 stride 2 pad 1",
       {1, 32, 9, 9},
       {32, 16, 4, 4},
       true,
       1,
       {2, 2},
       {},
       {1, 1, 1, 1}},
      {"W not constant",
       {2, 3, 6, 6},
       {3, 4, 3, 3},
       true,
       1,
       {2, 2},
       {},
       {1, 1, 1, 1},
       {},
       {},
       "",
       false},
      {"depthwise W not constant",
       {1, 6, 5, 5},
       {6, 1, 3, 3},
       true,
       6,
       {2, 2},
       {},
       {},
       {},
       {},
       "",
       false},
      // Output beyond what oneDNN's deconvolution produces: the kernel hands both calls over.
      {"output_padding beyond the end pads",
       {1, 2, 4, 4},
       {2, 3, 3, 3},
       true,
       1,
       {2, 2},
       {},
       {},
       {1, 1},
       {},
       "",
       true,
       2},
      {"SAME_UPPER stride 3 beyond the input",
       {1, 2, 3, 5},
       {2, 2, 2, 3},
       true,
       1,
       {3, 3},
       {},
       {},
       {},
       {},
       "SAME_UPPER",
       true,
       2},
      {"output_shape beyond the input",
       {1, 2, 3, 3},
       {2, 2, 3, 3},
       true,
       1,
       {2, 2},
       {},
       {},
       {},
       {9, 9},
       "",
       true,
       2},
      // Declined: 1-D, float64.
      {"1-D",
       {1, 3, 10},
       {3, 4, 3},
       true,
       1,
       {2},
       {},
       {},
       {},
       {},
       "",
       true,
       0,
       DataType::kFloat32,
       true},
      {"float64",
       {1, 3, 5, 5},
       {3, 4, 3, 3},
       true,
       1,
       {2, 2},
       {},
       {},
       {},
       {},
       "",
       true,
       0,
       DataType::kFloat64,
       true},
  };
  Outcome out;
  uint32_t seed = 7100;
  for (const ConvTransposeCase& c : cases) {
    std::map<std::string, Attribute> attrs;
    if (c.group != 1) attrs["group"] = attr_int(c.group);
    if (!c.strides.empty()) attrs["strides"] = attr_ints(c.strides);
    if (!c.dilations.empty()) attrs["dilations"] = attr_ints(c.dilations);
    if (!c.pads.empty()) attrs["pads"] = attr_ints(c.pads);
    if (!c.output_padding.empty()) attrs["output_padding"] = attr_ints(c.output_padding);
    if (!c.output_shape.empty()) attrs["output_shape"] = attr_ints(c.output_shape);
    if (!c.auto_pad.empty()) attrs["auto_pad"] = attr_string(c.auto_pad);
    std::vector<Tensor> inputs{random_tensor(c.dtype, c.x, seed++),
                               random_tensor(c.dtype, c.w, seed++)};
    if (c.bias) inputs.push_back(random_tensor(c.dtype, {c.w[1] * c.group}, seed++));
    const bool declined = compare("ConvTranspose " + c.name, "ConvTranspose", inputs, attrs,
                                  {false, c.const_w, true}, 2, 17, c.fallbacks);
    EXPECT_EQ(declined, c.expect_declined) << "ConvTranspose " << c.name;
    ++out.cases;
    out.declined += declined;
  }
  std::cout << "[ cpu-vs-ref ] ConvTranspose: " << out.cases << " cases, " << out.declined
            << " declined by the CPU backend\n";
}

// ---- Concat ----------------------------------------------------------------------------------

// A tensor of random bytes (any dtype of fixed size; float bit patterns may be NaN, which the
// byte comparison of ConcatTable does not mind).
Tensor random_bytes(DataType dt, const Shape& s, uint32_t seed) {
  std::mt19937 gen(seed);
  Tensor t(dt, s);
  auto* p = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>(gen());
  if (dt == DataType::kBool)
    for (size_t i = 0; i < t.nbytes(); ++i) p[i] &= 1;
  return t;
}

TEST(CpuVsRef, ConcatTable) {
  struct Case {
    std::vector<Shape> inputs;
    int64_t axis;
    DataType dtype = DataType::kFloat32;
  };
  const std::vector<Case> cases = {
      {{{2, 3}, {1, 3}, {4, 3}}, 0},
      {{{4, 5}}, 1},  // one input
      {{{2, 3, 4}, {2, 5, 4}}, 1, DataType::kInt64},
      {{{2, 3, 4}, {2, 3, 1}, {2, 3, 7}, {2, 3, 2}}, 2, DataType::kUInt8},
      {{{3, 5}, {3, 2}}, -1, DataType::kFloat16},
      {{{2, 3, 4}, {2, 1, 4}}, -2, DataType::kInt64},
      {{{2, 0, 3}, {2, 4, 3}, {2, 1, 3}}, 1, DataType::kFloat16},  // an empty input
      {{{5}, {0}, {3}}, 0, DataType::kInt8},
      {{{2, 2}, {2, 3}}, 1, DataType::kBool},
      {{{1, 3, 2, 5}, {1, 3, 2, 5}, {1, 3, 2, 5}}, -4, DataType::kInt32},
      {{{2, 3, 3, 5}, {2, 3, 1, 5}}, 2, DataType::kFloat64},
      {{{64, 100, 33}, {64, 50, 33}}, 1},  // large: split over the threads
      {{{0, 3}, {0, 2}}, 1},               // an empty output
  };
  uint32_t seed = 8100;
  for (const Case& c : cases) {
    std::string name = "Concat axis " + std::to_string(c.axis) + " " + dtype_name(c.dtype);
    std::vector<Tensor> inputs;
    for (const Shape& s : c.inputs) {
      inputs.push_back(random_bytes(c.dtype, s, seed++));
      name += " " + shape_str(s);
    }
    SCOPED_TRACE(name);
    const std::map<std::string, Attribute> attrs{{"axis", attr_int(c.axis)}};
    const int64_t fallbacks_before = cpu::reference_fallbacks();
    OpRun cpu = run_op(cpu_backend(), "Concat", inputs, attrs, 1, 17, {}, 2, 2);
    std::vector<Tensor> ref = run_ref_op("Concat", inputs, attrs, 1, 17);
    EXPECT_EQ(cpu.backend, "cpu");
    EXPECT_EQ(cpu::reference_fallbacks() - fallbacks_before, 0);
    ASSERT_EQ(cpu.outputs[0].shape(), ref[0].shape());
    ASSERT_EQ(cpu.outputs[0].nbytes(), ref[0].nbytes());
    EXPECT_TRUE(ref[0].nbytes() == 0 ||
                std::memcmp(cpu.outputs[0].raw(), ref[0].raw(), ref[0].nbytes()) == 0);
  }
}

// ---- Erf -------------------------------------------------------------------------------------

TEST(CpuVsRef, ErfTable) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> special = {0.0f,  -0.0f, inf,    -inf,  nan,    1e-30f, -1e-8f, 0.5f,
                                      -0.5f, 1.0f,  -2.0f,  3.9f,  -3.9f,  5.0f,   -5.0f,  10.0f,
                                      -10.f, 1e30f, -1e30f, 3e38f, -3e38f, 0.1f,   -nan};
  std::vector<Tensor> xs;
  for (size_t n : {special.size(), size_t{1}, size_t{16}}) {  // a tail, one, whole vectors
    Tensor t(DataType::kFloat32, {static_cast<int64_t>(n)});
    for (size_t i = 0; i < n; ++i) t.data<float>()[i] = special[i % special.size()];
    xs.push_back(std::move(t));
  }
  uint32_t seed = 9100;
  for (const Shape& s : std::vector<Shape>{{3, 4}, {2, 3, 5, 7}, {}, {0}, {5000}, {3, 4099}})
    xs.push_back(scaled(random_tensor(DataType::kFloat32, s, seed++), 4.0f));
  for (const Tensor& x : xs) {
    const std::string name = "Erf " + shape_str(x.shape());
    EXPECT_FALSE(compare(name, "Erf", {x}, {}, {false})) << name;
    // The special values exactly: erf(+-inf) = +-1, NaN stays NaN, erf(0) = 0 to 1e-6.
    OpRun cpu = run_op(cpu_backend(), "Erf", {x}, {}, 1, 17, {false}, 2, 1);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float v = x.data<float>()[i], y = cpu.outputs[0].data<float>()[i];
      if (std::isnan(v)) {
        EXPECT_TRUE(std::isnan(y)) << name << " at " << i;
      } else if (std::isinf(v) || std::abs(v) > 10) {
        EXPECT_EQ(y, v > 0 ? 1.0f : -1.0f) << name << " at " << i;
      } else if (v == 0) {
        EXPECT_LE(std::abs(y), 1e-6f) << name << " at " << i;
      }
    }
  }
}

// Errors still name the node: the schema rejects a bad geometry before any kernel runs, and the
// CPU kernel itself rejects tensors that do not fit the node.
TEST(CpuVsRef, Errors) {
  EXPECT_THROW(run_op(cpu_backend(), "Conv",
                      {random_tensor(DataType::kFloat32, {1, 3, 5, 5}, 1),
                       random_tensor(DataType::kFloat32, {4, 2, 3, 3}, 2)},
                      {}, 1, 17, {false, true}),
               Error);
  Graph g;
  Value* x = g.add_value("x");
  Value* w = g.add_value("w");
  Value* y = g.add_value("y");
  Node* node = g.add_node("Conv", "conv", {x, w}, {y});
  node->opset = 17;
  std::unique_ptr<Kernel> k = (*cpu_backend().kernels().find("", "Conv"))(*node);
  ASSERT_NE(k, nullptr);
  ThreadPool pool(1);
  KernelContext ctx{*node, pool};
  Tensor xt = random_tensor(DataType::kFloat32, {1, 3, 5, 5}, 3);
  Tensor wt = random_tensor(DataType::kFloat32, {4, 2, 3, 3}, 4);  // 2 channels, X has 3
  Tensor yt(DataType::kFloat32, {1, 4, 3, 3});
  std::vector<const Tensor*> ins{&xt, &wt};
  std::vector<Tensor*> outs{&yt};
  EXPECT_THROW(k->compute(ctx, ins, outs), Error);
}

}  // namespace
}  // namespace tandem

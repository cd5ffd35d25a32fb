// The CPU backend (oneDNN) against the reference backend: tables of Conv, MatMul and Gemm cases
// run through both on the same random inputs, compared with max |cpu - ref| <= 1e-4 * (1 +
// max |ref|). Each case also says whether the CPU backend is expected to decline it (send it to
// the reference backend), so a fast path that silently stops applying fails the test too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "core/thread_pool.h"
#include "fast_vs_ref.h"
#include "op_test_util.h"
#include "ops/schema.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_float;
using testing::attr_int;
using testing::attr_ints;
using testing::attr_string;
using testing::Expect;
using testing::expect_fast_matches_ref;
using testing::FastRun;
using testing::max_abs;
using testing::max_abs_diff;
using testing::OpRun;
using testing::OpTest;
using testing::random_bytes;
using testing::random_tensor;
using testing::scalar_f32;
using testing::Tolerance;

struct Outcome {
  int cases = 0, declined = 0;
  void add(const FastRun& r) {
    ++cases;
    declined += r.declined();
  }
};

// The tables' comparison: every output within 1e-4 * (1 + max |ref|), compute called twice (so
// cached plans and prepacked weights are used on the second call), and the path the CPU
// backend takes as `expect` says: a node it accepts must really run on oneDNN, not hand each
// call over.
FastRun check(const OpTest& t, Expect expect = Expect::takes()) {
  return expect_fast_matches_ref(t, cpu_backend(), Tolerance::scaled(1e-4), expect);
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

TANDEM_FAST_TABLE_TEST(CpuVsRef, ConvTable, {"Conv"}) {
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
    SCOPED_TRACE("Conv " + c.name);
    out.add(check(OpTest("Conv").inputs(inputs).attrs(attrs).constants({false, c.const_w, true}),
                  Expect::takes_or_declines(!c.expect_declined)));
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

TANDEM_FAST_TABLE_TEST(CpuVsRef, MatMulTable, {"MatMul"}) {
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
    std::vector<Tensor> inputs{random_tensor(c.dtype, c.a, seed++),
                               random_tensor(c.dtype, c.b, seed++)};
    out.add(check(OpTest("MatMul").inputs(inputs).constants({false, c.const_b}),
                  Expect::takes_or_declines(!c.expect_declined)));
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

TANDEM_FAST_TABLE_TEST(CpuVsRef, GemmTable, {"Gemm"}) {
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
    OpTest t = OpTest("Gemm")
                   .attr("transA", c.trans_a)
                   .attr("transB", c.trans_b)
                   .attr("alpha", c.alpha)
                   .attr("beta", c.beta)
                   .constants({false, c.const_b, true});
    t.input(random_tensor(DataType::kFloat32, c.a, seed++));
    t.input(random_tensor(DataType::kFloat32, c.b, seed++));
    if (c.has_c) t.input(random_tensor(DataType::kFloat32, c.c, seed++));
    out.add(check(t));
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

TANDEM_FAST_TABLE_TEST(CpuVsRef, SoftmaxTable, {"Softmax", "LogSoftmax"}) {
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
      Tensor x = random_tensor(c.dtype, c.x, seed++);
      if (c.dtype == DataType::kFloat32) x = scaled(std::move(x), c.scale);
      OpTest t = OpTest(op).opset(c.opset).input(x);
      if (c.has_axis) t.attr("axis", c.axis);
      out.add(check(t, Expect::takes_or_declines(!c.expect_declined)));
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

TANDEM_FAST_TABLE_TEST(CpuVsRef, EltwiseTable,
                       {"Sigmoid", "Tanh", "Relu", "LeakyRelu", "Elu", "Exp", "Sqrt", "Abs",
                        "HardSwish", "Softplus", "Erf"}) {
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
    Tensor x = random_tensor(c.dtype, c.x, seed++);
    if (c.dtype == DataType::kFloat32) {
      x = scaled(std::move(x), c.scale);
      if (c.positive)
        for (int64_t i = 0; i < x.numel(); ++i)
          x.data<float>()[i] = std::abs(x.data<float>()[i]) + 0.01f;
    }
    out.add(
        check(OpTest(c.op).attrs(c.attrs).input(x), Expect::takes_or_declines(!c.expect_declined)));
  }
  std::cout << "[ cpu-vs-ref ] Eltwise: " << out.cases << " cases, " << out.declined
            << " declined by the CPU backend\n";
}

// Clip: attribute bounds (opset 6), constant input bounds (opset 13), either bound omitted, and
// bounds computed at run time (declined).
TANDEM_FAST_TABLE_TEST(CpuVsRef, ClipTable, {"Clip"}) {
  Tensor x = scaled(random_tensor(DataType::kFloat32, {3, 4, 5}, 77), 3.0f);
  const Tensor none;  // an omitted optional input
  check(OpTest("Clip").opset(6).attr("min", -0.5f).attr("max", 1.5f).input(x));
  check(OpTest("Clip").opset(6).attr("min", 0.0f).input(x));
  check(OpTest("Clip")
            .opset(13)
            .inputs({x, scalar_f32(-1.0f), scalar_f32(2.0f)})
            .constants({false, true, true}));
  check(
      OpTest("Clip").opset(13).inputs({x, none, scalar_f32(0.25f)}).constants({false, true, true}));
  check(OpTest("Clip").opset(13).input(x));
  check(OpTest("Clip").opset(13).inputs({x, scalar_f32(-1.0f), scalar_f32(2.0f)}),
        Expect::declines());  // bounds computed at run time
  check(OpTest("Clip")
            .opset(13)
            .inputs({x, scalar_f32(2.0f), scalar_f32(-1.0f)})
            .constants({false, true, true}),
        Expect::declines());  // min > max
}

// ---- Add, Sub, Mul, Div ---------------------------------------------------------------------

struct BinaryCase {
  Shape a, b;
  bool expect_declined = false;  // at run time (only A broadcasts in Sub/Div, or both do)
  DataType dtype = DataType::kFloat32;
};

TANDEM_FAST_TABLE_TEST(CpuVsRef, BinaryTable, {"Add", "Sub", "Mul", "Div"}) {
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
      {{2, 7, 7, 40}, {2, 1, 1, 40}},     // a channels-last squeeze-excite gate: vectors + tail
      {{3, 64}, {64}},                    // whole vectors only
      {{2, 3}, {2, 3}, false, DataType::kInt32},
  };
  Outcome out;
  uint32_t seed = 2100;
  for (const std::string op : {"Add", "Sub", "Mul", "Div"}) {
    for (const BinaryCase& c : cases) {
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
      out.add(check(OpTest(op).inputs({a, b}),
                    Expect::takes_or_declines(c.dtype == DataType::kFloat32)));
    }
  }
  std::cout << "[ cpu-vs-ref ] Add/Sub/Mul/Div: " << out.cases << " cases, " << out.declined
            << " declined by the CPU backend\n";
}

// The thread count of the kernel context (1 and 3) must not change results beyond rounding.
TANDEM_FAST_TABLE_TEST(CpuVsRef, ThreadCounts, {"Conv", "MatMul"}) {
  std::vector<Tensor> conv_in{random_tensor(DataType::kFloat32, {2, 16, 12, 12}, 1),
                              random_tensor(DataType::kFloat32, {24, 16, 3, 3}, 2),
                              random_tensor(DataType::kFloat32, {24}, 3)};
  std::vector<Tensor> mm_in{random_tensor(DataType::kFloat32, {3, 40, 50}, 4),
                            random_tensor(DataType::kFloat32, {50, 30}, 5)};
  for (int threads : {1, 3}) {
    check(OpTest("Conv")
              .attr("pads", {1, 1, 1, 1})
              .inputs(conv_in)
              .constants({false, true, true})
              .threads(threads));
    check(OpTest("MatMul").inputs(mm_in).constants({false, true}).threads(threads));
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
      std::vector<Tensor> ref = OpTest("Conv").inputs({xt, *wt}).attrs(node->attrs).run_ref();
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
  int64_t expected_fallbacks = 0;  // compute calls (of 2) handed to the reference kernel
  std::vector<float> roi = {};
};

TANDEM_FAST_TABLE_TEST(CpuVsRef, ResizeTable, {"Resize"}) {
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
    SCOPED_TRACE(c.name);
    check(OpTest("Resize")
              .opset(18)
              .attrs(c.attrs)
              .inputs({x, roi, scales, sizes})
              .constants({false, true, true, true}),
          Expect::takes_or_hands_over(c.expected_fallbacks == 0));
  }
}

// Upsample (opsets 7 and 9) runs on the Resize kernel: scales as an attribute (7) or an input
// (9), nearest and linear ("bilinear" is opset 7's spelling), upscaling only.
TANDEM_FAST_TABLE_TEST(CpuVsRef, UpsampleTable, {"Upsample"}) {
  struct Case {
    Shape x;
    std::vector<float> scales;
    std::string mode;  // empty: the default, nearest
    int opset = 9;
    bool const_scales = true;
  };
  const std::vector<Case> cases = {
      {{1, 3, 5, 7}, {1, 1, 2, 2}, ""},
      {{2, 4, 3, 3}, {1, 1, 3, 2}, "nearest"},
      {{1, 2, 4, 6}, {1, 1, 2, 2}, "linear"},
      {{1, 2, 4, 5}, {1, 1, 1.5f, 2.5f}, "linear"},
      {{2, 5, 7}, {1, 1, 3}, "nearest", 9, false},
      {{1, 3, 4, 4}, {1, 1, 2, 2}, "nearest", 7},
      {{1, 2, 3, 5}, {1, 1, 2, 3}, "bilinear", 7},
  };
  uint32_t seed = 5300;
  for (const Case& c : cases) {
    OpTest t =
        OpTest("Upsample").opset(c.opset).input(random_tensor(DataType::kFloat32, c.x, seed++));
    if (!c.mode.empty()) t.attr("mode", c.mode);
    if (c.opset < 9) {
      t.attr("scales", c.scales);
    } else {
      t.input(Tensor::from_vector(DataType::kFloat32, {int64_t(c.scales.size())}, c.scales));
      if (c.const_scales) t.constant(1);
    }
    check(t);
  }
}

// ---- Transpose ------------------------------------------------------------------------------

TANDEM_FAST_TABLE_TEST(CpuVsRef, TransposeTable, {"Transpose"}) {
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
    OpTest t = OpTest("Transpose").input(random_tensor(c.dtype, c.x, seed++));
    if (!c.perm.empty()) t.attr("perm", c.perm);
    // Exact: a transpose moves values.
    expect_fast_matches_ref(t, cpu_backend(), Tolerance::exact_bytes());
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
  int64_t fallbacks = 0;  // compute calls (of 2) meant for the reference kernel: 0 or 2
  DataType dtype = DataType::kFloat32;
  bool expect_declined = false;
};

TANDEM_FAST_TABLE_TEST(CpuVsRef, ConvTransposeTable, {"ConvTranspose"}) {
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
    SCOPED_TRACE("ConvTranspose " + c.name);
    out.add(check(
        OpTest("ConvTranspose").attrs(attrs).inputs(inputs).constants({false, c.const_w, true}),
        c.expect_declined ? Expect::declines() : Expect::takes_or_hands_over(c.fallbacks == 0)));
  }
  std::cout << "[ cpu-vs-ref ] ConvTranspose: " << out.cases << " cases, " << out.declined
            << " declined by the CPU backend\n";
}

// ---- Concat ----------------------------------------------------------------------------------

// Random bytes (float bit patterns may be NaN), compared bytewise.
TANDEM_FAST_TABLE_TEST(CpuVsRef, ConcatTable, {"Concat"}) {
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
      // Channels-last runs copied in vectors: two at a time, one, and a byte tail.
      {{{2, 7, 5, 32}, {2, 7, 5, 48}, {2, 7, 5, 3}}, 3},
      {{{3, 70}, {3, 33}, {3, 1}}, 1, DataType::kFloat64},
      {{{0, 3}, {0, 2}}, 1},  // an empty output
  };
  uint32_t seed = 8100;
  for (const Case& c : cases) {
    OpTest t = OpTest("Concat").attr("axis", c.axis);
    for (const Shape& s : c.inputs) t.input(random_bytes(c.dtype, s, seed++));
    expect_fast_matches_ref(t, cpu_backend(), Tolerance::exact_bytes());
  }
}

// ---- Erf -------------------------------------------------------------------------------------

TANDEM_FAST_TABLE_TEST(CpuVsRef, ErfTable, {"Erf"}) {
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
    check(OpTest("Erf").input(x));
    // The special values exactly: erf(+-inf) = +-1, NaN stays NaN, erf(0) = 0 to 1e-6.
    OpRun cpu = OpTest("Erf").input(x).run(cpu_backend());
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
  EXPECT_THROW(OpTest("Conv")
                   .inputs({random_tensor(DataType::kFloat32, {1, 3, 5, 5}, 1),
                            random_tensor(DataType::kFloat32, {4, 2, 3, 3}, 2)})
                   .constants({false, true})
                   .run(cpu_backend()),
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

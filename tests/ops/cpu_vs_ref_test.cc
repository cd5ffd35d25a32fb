// The CPU backend (oneDNN) against the reference backend: tables of Conv, MatMul and Gemm cases
// run through both on the same random inputs, compared with max |cpu - ref| <= 1e-4 * (1 +
// max |ref|). Each case also says whether the CPU backend is expected to decline it (send it to
// the reference backend), so a fast path that silently stops applying fails the test too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
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
             int threads = 2) {
  SCOPED_TRACE(name);
  const int64_t fallbacks_before = cpu::reference_fallbacks();
  OpRun cpu = run_op(cpu_backend(), op, inputs, attrs, 1, 17, constant, threads, 2);
  std::vector<Tensor> ref = run_ref_op(op, inputs, attrs);
  const double diff = max_abs_diff(cpu.outputs.at(0), ref.at(0));
  const double tol = 1e-4 * (1 + max_abs(ref[0]));
  EXPECT_LE(diff, tol) << name << ": max |cpu - ref| = " << diff;
  // A node the CPU backend accepts must really run on oneDNN, not hand each call over.
  if (cpu.backend == "cpu") {
    EXPECT_EQ(cpu::reference_fallbacks(), fallbacks_before)
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

// The CPU backend's CNN kernels against the reference backend: FusedConv (every activation,
// with and without B and Z, groups, depthwise, strides, pads), MaxPool / AveragePool (odd sizes,
// pads, ceil_mode, strides, dilations, count_include_pad, auto_pad), the global pools and
// BatchNormalization. Both run on the same random inputs and must agree within
// 1e-4 * (1 + max |ref|); each case also says whether the CPU backend declines it or hands its
// calls to the reference kernel, so a fast path that silently stops applying fails too. The
// reference FusedConv is itself checked against the unfused ops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/cpu_kernels.h"
#include "fast_vs_ref.h"
#include "op_test_util.h"
#include "ops/fused_activation.h"
#include "ops/schema.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_float;
using testing::attr_floats;
using testing::attr_int;
using testing::attr_ints;
using testing::attr_string;
using testing::Expect;
using testing::expect_fast_matches_ref;
using testing::max_abs;
using testing::max_abs_diff;
using testing::OpTest;
using testing::random_tensor;
using testing::Tolerance;

// `t` [N, C, H, W] as NHWC [N, H, W, C].
Tensor nhwc_of(const Tensor& t) {
  const Shape& s = t.shape();
  Tensor out(t.dtype(), {s[0], s[2], s[3], s[1]});
  int64_t o = 0;
  for (int64_t n = 0; n < s[0]; ++n)
    for (int64_t h = 0; h < s[2]; ++h)
      for (int64_t w = 0; w < s[3]; ++w)
        for (int64_t c = 0; c < s[1]; ++c, ++o)
          out.data<float>()[o] = t.data<float>()[((n * s[1] + c) * s[2] + h) * s[3] + w];
  return out;
}

// The tables' comparison: every output within 1e-4 * (1 + max |ref|), compute called twice
// (cached plans and prepacked weights are used on the second call), and the path the CPU
// backend takes as `expect` says.
void check(const OpTest& t, Expect expect = Expect::takes()) {
  expect_fast_matches_ref(t, cpu_backend(), Tolerance::scaled(1e-4), expect);
}

// FusedConv and its channels-last form, in the fused domain.
OpTest fused_conv(const std::vector<Tensor>& in, const std::map<std::string, Attribute>& attrs) {
  return OpTest("FusedConv").domain(kFusedDomain).attrs(attrs).inputs(in);
}

// ---- FusedConv ------------------------------------------------------------------------------

struct Act {
  std::string name;  // the `activation` attribute
  std::vector<float> params;
};

const std::vector<Act>& activations() {
  static const std::vector<Act> acts = {
      {"", {}},
      {"Relu", {}},
      {"LeakyRelu", {}},
      {"LeakyRelu", {0.3f}},
      {"Clip", {0.0f, 6.0f}},
      {"Clip", {-0.5f, 0.25f}},
      {"Clip", {}},  // unbounded
      {"Sigmoid", {}},
      {"HardSigmoid", {}},
      {"HardSigmoid", {0.3f, 0.4f}},
      {"HardSwish", {}},
      {"Tanh", {}},
      {"SiLU", {}},
  };
  return acts;
}

struct ConvGeometry {
  std::string name;
  Shape x, w;
  int64_t group = 1;
  std::vector<int64_t> strides, pads, dilations;
};

const std::vector<ConvGeometry>& geometries() {
  static const std::vector<ConvGeometry> g = {
      {"3x3 pad 1", {2, 3, 7, 9}, {5, 3, 3, 3}, 1, {}, {1, 1, 1, 1}},
      {"1x1", {1, 16, 5, 7}, {8, 16, 1, 1}},
      {"depthwise 3x3 stride 2", {1, 8, 9, 9}, {8, 1, 3, 3}, 8, {2, 2}, {1, 1, 1, 1}},
      {"group 2 asymmetric pads", {1, 4, 6, 5}, {6, 2, 3, 3}, 2, {}, {0, 1, 2, 0}},
      {"strides 2x1 dilation 2", {1, 3, 11, 8}, {4, 3, 3, 2}, 1, {2, 1}, {1, 1, 1, 1}, {2, 2}},
      // A dense layer (squeeze-and-excite): computed by the kernel itself, not oneDNN.
      {"1x1 on 1x1 batch 2", {2, 40, 1, 1}, {24, 40, 1, 1}},
  };
  return g;
}

// The reference FusedConv against Conv -> Add -> activation run as separate reference ops.
Tensor unfused_reference(const ConvGeometry& g, const Act& act, const std::vector<Tensor>& in,
                         const std::map<std::string, Attribute>& conv_attrs) {
  std::vector<Tensor> conv_in(in.begin(), in.begin() + std::min<size_t>(in.size(), 3));
  Tensor y = OpTest("Conv").inputs(conv_in).attrs(conv_attrs).run_ref()[0];
  if (in.size() > 3 && in[3].defined()) y = OpTest("Add").inputs({y, in[3]}).run_ref()[0];
  auto p = [&](size_t i, float dflt) { return i < act.params.size() ? act.params[i] : dflt; };
  const float inf = std::numeric_limits<float>::infinity();
  if (act.name == "Relu" || act.name == "Sigmoid" || act.name == "Tanh" ||
      act.name == "HardSwish") {
    y = OpTest(act.name).input(y).run_ref()[0];
  } else if (act.name == "LeakyRelu") {
    y = OpTest("LeakyRelu").input(y).attr("alpha", p(0, 0.01f)).run_ref()[0];
  } else if (act.name == "HardSigmoid") {
    y = OpTest("HardSigmoid")
            .input(y)
            .attr("alpha", p(0, 0.2f))
            .attr("beta", p(1, 0.5f))
            .run_ref()[0];
  } else if (act.name == "Clip") {
    y = OpTest("Clip")
            .inputs({y})
            .attr("min", p(0, -inf))
            .attr("max", p(1, inf))
            .opset(6)
            .run_ref()[0];
  } else if (act.name == "SiLU") {
    y = OpTest("Mul").inputs({y, OpTest("Sigmoid").input(y).run_ref()[0]}).run_ref()[0];
  }
  return y;
}

TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, FusedConvTable, {"com.tandem:FusedConv"}) {
  int cases = 0;
  uint32_t seed = 3000;
  for (const ConvGeometry& g : geometries()) {
    std::map<std::string, Attribute> conv_attrs;
    if (g.group != 1) conv_attrs["group"] = attr_int(g.group);
    if (!g.strides.empty()) conv_attrs["strides"] = attr_ints(g.strides);
    if (!g.pads.empty()) conv_attrs["pads"] = attr_ints(g.pads);
    if (!g.dilations.empty()) conv_attrs["dilations"] = attr_ints(g.dilations);
    const Shape y_shape = OpTest("Conv")
                              .inputs({random_tensor(DataType::kFloat32, g.x, 1),
                                       random_tensor(DataType::kFloat32, g.w, 2)})
                              .attrs(conv_attrs)
                              .run_ref()[0]
                              .shape();
    for (const Act& act : activations()) {
      for (int variant = 0; variant < 4; ++variant) {
        const bool bias = variant & 1, z = variant & 2;
        std::map<std::string, Attribute> attrs = conv_attrs;
        if (!act.name.empty()) attrs["activation"] = attr_string(act.name);
        if (!act.params.empty()) attrs["activation_params"] = attr_floats(act.params);
        std::vector<Tensor> in{random_tensor(DataType::kFloat32, g.x, seed++, 2.0f),
                               random_tensor(DataType::kFloat32, g.w, seed++)};
        in.push_back(bias ? random_tensor(DataType::kFloat32, {g.w[0]}, seed++) : Tensor());
        if (z) in.push_back(random_tensor(DataType::kFloat32, y_shape, seed++));
        const std::string name =
            "FusedConv " + g.name + " " + (act.name.empty() ? "no activation" : act.name) + " " +
            std::to_string(act.params.size()) + " params" + (bias ? " B" : "") + (z ? " Z" : "");
        SCOPED_TRACE(name);
        check(fused_conv(in, attrs).constants({false, true, true, false}));
        // The oracle itself: the reference FusedConv equals the unfused reference ops.
        std::vector<Tensor> fused = fused_conv(in, attrs).run_ref();
        Tensor unfused = unfused_reference(g, act, in, conv_attrs);
        EXPECT_LE(max_abs_diff(fused[0], unfused), 1e-6 * (1 + max_abs(unfused)));
        ++cases;
      }
    }
  }
  std::cout << "[ cpu-vs-ref ] FusedConv: " << cases << " cases\n";
}

// Z that broadcasts (per channel, or to a larger output) runs on the reference kernel; Clip with
// lo > hi is declined (oneDNN's clip differs there); W computed at run time stays fast.
TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, FusedConvEdgeCases, {"com.tandem:FusedConv"}) {
  const Tensor x = random_tensor(DataType::kFloat32, {1, 3, 6, 6}, 1);
  const Tensor w = random_tensor(DataType::kFloat32, {4, 3, 3, 3}, 2);
  const Tensor b = random_tensor(DataType::kFloat32, {4}, 3);
  std::map<std::string, Attribute> attrs{{"pads", attr_ints({1, 1, 1, 1})},
                                         {"activation", attr_string("Relu")}};
  // A Z that broadcasts to the conv's output: oneDNN's binary add post-op, any layout. Over a
  // batch of 3, a Z that varies per item ([3, 4, 1, 1], the UNet's time embedding) runs the
  // primitive once per item.
  uint32_t seed = 10;
  const Tensor x3 = random_tensor(DataType::kFloat32, {3, 3, 6, 6}, 4);
  for (const Shape& zs : std::vector<Shape>{{1, 4, 1, 1},
                                            {4, 1, 1},
                                            {1, 1, 1, 6},
                                            {},
                                            {6, 6},
                                            {3, 4, 1, 1},
                                            {3, 1, 1, 1},
                                            {3, 4, 1, 6},
                                            {3, 1, 6, 6}}) {
    for (bool cl : {false, true}) {
      std::map<std::string, Attribute> a = attrs;
      Tensor xi = zs.size() == 4 && zs[0] == 3 ? x3 : x;
      Tensor zi = random_tensor(DataType::kFloat32, zs, seed++);
      if (cl) {
        a["channels_last"] = attr_int(1);
        xi = nhwc_of(xi);
        Shape z4 = zs;  // as rank 4 with leading 1s, then NHWC
        z4.insert(z4.begin(), 4 - z4.size(), 1);
        Tensor padded(DataType::kFloat32, z4);
        std::copy_n(zi.data<float>(), zi.numel(), padded.data<float>());
        zi = nhwc_of(padded);
      }
      check(fused_conv({xi, w, b, zi}, a).constants({false, true, true, false}));
    }
  }
  check(fused_conv({x, w, b, random_tensor(DataType::kFloat32, {2, 4, 6, 6}, 5)}, attrs)
            .constants({false, true, true, false}),
        Expect::hands_over());  // Z larger than the conv's output
  check(fused_conv({random_tensor(DataType::kFloat32, {3, 5, 1, 1}, 7),
                    random_tensor(DataType::kFloat32, {6, 5, 1, 1}, 8),
                    random_tensor(DataType::kFloat32, {6}, 9)},
                   {{"activation", attr_string("Sigmoid")}}));  // 1x1 on 1x1, W at run time
  check(fused_conv({x, w, b, random_tensor(DataType::kFloat32, {1, 4, 6, 6}, 6)},
                   attrs));  // W at run time
  std::map<std::string, Attribute> bad_clip = attrs;
  bad_clip["activation"] = attr_string("Clip");
  bad_clip["activation_params"] = attr_floats({1.0f, -1.0f});
  check(fused_conv({x, w, b}, bad_clip).constants({false, true, true}), Expect::declines());
  std::map<std::string, Attribute> unknown = attrs;
  unknown["activation"] = attr_string("Swoosh");
  EXPECT_THROW(OpTest("FusedConv").inputs({x, w, b}).attrs(unknown).domain(kFusedDomain).run_ref(),
               Error);
  std::map<std::string, Attribute> wrong_count = attrs;
  wrong_count["activation"] = attr_string("Clip");
  wrong_count["activation_params"] = attr_floats({1.0f});
  EXPECT_THROW(
      OpTest("FusedConv").inputs({x, w, b}).attrs(wrong_count).domain(kFusedDomain).run_ref(),
      Error);
}

// ---- MaxPool, AveragePool -------------------------------------------------------------------

struct PoolCase {
  std::string name;
  Shape x;
  std::vector<int64_t> kernel, strides, pads, dilations;
  int64_t ceil_mode = 0;
  int64_t count_include_pad = 0;  // AveragePool only
  std::string auto_pad;
  bool max_fallback = false, avg_fallback = false;  // handed to the reference kernel
};

TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, PoolTable, {"MaxPool", "AveragePool"}) {
  const std::vector<PoolCase> cases = {
      {"2x2 stride 2", {1, 3, 8, 8}, {2, 2}, {2, 2}},
      {"3x3 stride 2 pad 1 (resnet stem)", {2, 16, 17, 17}, {3, 3}, {2, 2}, {1, 1, 1, 1}},
      {"3x3 stride 2 pad 1 include pad", {2, 5, 17, 13}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {}, 0, 1},
      {"3x3 stride 1 odd 7x5", {1, 4, 7, 5}, {3, 3}},
      {"asymmetric pads", {1, 3, 9, 7}, {3, 2}, {2, 1}, {0, 1, 2, 1}},
      {"asymmetric pads include pad", {1, 3, 9, 7}, {3, 2}, {2, 1}, {0, 1, 2, 1}, {}, 0, 1},
      {"ceil_mode", {1, 3, 8, 8}, {3, 3}, {2, 2}, {}, {}, 1},
      {"ceil_mode pad 1", {1, 3, 10, 7}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {}, 1},
      // count_include_pad with a ceil_mode window past the pads: ONNX does not count that part.
      {"ceil_mode include pad", {1, 3, 8, 8}, {3, 3}, {2, 2}, {}, {}, 1, 1, "", false, true},
      {"ceil_mode pad 1 include pad (fits)", {1, 3, 9, 9}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {}, 1, 1},
      {"dilation 2", {1, 3, 11, 10}, {3, 3}, {1, 1}, {}, {2, 2}},
      {"dilation 2 stride 2 pad 2", {2, 3, 12, 11}, {2, 3}, {2, 2}, {2, 2, 2, 2}, {2, 2}},
      {"SAME_UPPER stride 2", {1, 3, 7, 8}, {3, 3}, {2, 2}, {}, {}, 0, 0, "SAME_UPPER"},
      {"SAME_LOWER stride 2", {1, 3, 7, 8}, {2, 2}, {2, 2}, {}, {}, 0, 0, "SAME_LOWER"},
      {"SAME_UPPER include pad", {1, 3, 7, 8}, {3, 3}, {2, 2}, {}, {}, 0, 1, "SAME_UPPER"},
      {"VALID", {1, 3, 7, 8}, {3, 3}, {2, 2}, {}, {}, 0, 0, "VALID"},
      {"window = input", {2, 6, 5, 5}, {5, 5}},
      {"1-D", {2, 3, 11}, {3}, {2}, {1, 1}},
      {"3-D", {1, 2, 5, 6, 7}, {2, 3, 2}, {2, 1, 2}, {0, 1, 0, 1, 1, 1}},
      {"3-D ceil_mode", {1, 2, 5, 6, 7}, {2, 2, 2}, {2, 2, 2}, {}, {}, 1},
      // A pad as large as the window: a window could see only padding. Reference kernel.
      {"pad = window", {1, 2, 6, 6}, {2, 2}, {1, 1}, {2, 2, 2, 2}, {}, 0, 0, "", true, true},
  };
  int count = 0;
  uint32_t seed = 4000;
  for (const PoolCase& c : cases) {
    std::map<std::string, Attribute> attrs{{"kernel_shape", attr_ints(c.kernel)}};
    if (!c.strides.empty()) attrs["strides"] = attr_ints(c.strides);
    if (!c.pads.empty()) attrs["pads"] = attr_ints(c.pads);
    if (!c.dilations.empty()) attrs["dilations"] = attr_ints(c.dilations);
    if (c.ceil_mode) attrs["ceil_mode"] = attr_int(c.ceil_mode);
    if (!c.auto_pad.empty()) attrs["auto_pad"] = attr_string(c.auto_pad);
    SCOPED_TRACE(c.name);
    const Tensor x = random_tensor(DataType::kFloat32, c.x, seed++, 3.0f);
    // MaxPool ignores count_include_pad; run it once per case.
    if (c.count_include_pad == 0) {
      check(OpTest("MaxPool").attrs(attrs).input(x), Expect::takes_or_hands_over(!c.max_fallback));
    }
    std::map<std::string, Attribute> avg = attrs;
    avg["count_include_pad"] = attr_int(c.count_include_pad);
    check(OpTest("AveragePool").attrs(avg).input(x), Expect::takes_or_hands_over(!c.avg_fallback));
    ++count;
  }
  std::cout << "[ cpu-vs-ref ] MaxPool/AveragePool: " << count << " cases\n";
}

// MaxPool with its Indices output, int8 and float64 inputs: declined (reference backend).
TEST(CpuVsRefCnn, PoolDeclined) {
  std::map<std::string, Attribute> attrs{{"kernel_shape", attr_ints({2, 2})},
                                         {"strides", attr_ints({2, 2})}};
  const Tensor x = random_tensor(DataType::kFloat32, {1, 3, 6, 6}, 1);
  check(OpTest("MaxPool").attrs(attrs).input(x).outputs(2), Expect::declines());  // Indices
  check(OpTest("MaxPool").attrs(attrs).input(random_tensor(DataType::kFloat64, {1, 3, 6, 6}, 2)),
        Expect::declines());
  check(OpTest("GlobalAveragePool").input(random_tensor(DataType::kFloat64, {1, 3, 6, 6}, 3)),
        Expect::declines());
}

TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, GlobalPoolTable, {"GlobalAveragePool", "GlobalMaxPool"}) {
  const std::vector<Shape> shapes = {{1, 3, 8, 8},   {2, 16, 7, 5},   {1, 64, 1, 1},     {3, 5, 17},
                                     {1, 4, 33, 31}, {2, 3, 4, 5, 6}, {1, 256, 128, 128}};
  uint32_t seed = 5000;
  for (const Shape& s : shapes) {
    const Tensor x = random_tensor(DataType::kFloat32, s, seed++, 5.0f);
    for (const std::string op : {"GlobalAveragePool", "GlobalMaxPool"}) check(OpTest(op).input(x));
  }
}

// ---- BatchNormalization ---------------------------------------------------------------------

// A BatchNormalization variance: c random values made positive (at least 0.1).
Tensor positive_variance(int64_t c, uint32_t seed) {
  Tensor var = random_tensor(DataType::kFloat32, {c}, seed);
  for (int64_t i = 0; i < c; ++i) var.data<float>()[i] = std::abs(var.data<float>()[i]) + 0.1f;
  return var;
}

TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, BatchNormTable, {"BatchNormalization"}) {
  const std::vector<Shape> shapes = {{2, 3, 5, 7}, {1, 16, 1, 1},   {4, 6},
                                     {3, 5, 11},   {1, 8, 2, 3, 4}, {1, 32, 64, 64}};
  uint32_t seed = 6000;
  for (const Shape& s : shapes) {
    for (bool constant : {true, false}) {
      const int64_t c = s[1];
      const Tensor var = positive_variance(c, seed++);
      const std::vector<Tensor> in{random_tensor(DataType::kFloat32, s, seed++, 3.0f),
                                   random_tensor(DataType::kFloat32, {c}, seed++),
                                   random_tensor(DataType::kFloat32, {c}, seed++),
                                   random_tensor(DataType::kFloat32, {c}, seed++), var};
      check(OpTest("BatchNormalization")
                .attr("epsilon", 1e-3f)
                .inputs(in)
                .constants({false, constant, constant, constant, constant}));
      // Training mode: the batch's statistics, and the running mean and variance as outputs.
      check(OpTest("BatchNormalization")
                .attr("epsilon", 1e-3f)
                .attr("training_mode", 1)
                .attr("momentum", 0.7f)
                .inputs(in)
                .constants({false, constant, constant, constant, constant})
                .outputs(3));
    }
  }
  // float64: declined.
  const std::vector<Tensor> f64{
      random_tensor(DataType::kFloat64, {1, 2, 3, 3}, 1), random_tensor(DataType::kFloat64, {2}, 2),
      random_tensor(DataType::kFloat64, {2}, 3), random_tensor(DataType::kFloat64, {2}, 4),
      random_tensor(DataType::kFloat64, {2}, 5)};
  std::vector<Tensor> f64_pos = f64;
  for (int64_t i = 0; i < 2; ++i) f64_pos[4].data<double>()[i] = 1.0 + i;
  check(OpTest("BatchNormalization").inputs(f64_pos).constants({false, true, true, true, true}),
        Expect::declines());
}

// ---- Channels-last ops (ops/layout.h) ---------------------------------------------------------

// The channels-last BatchNormalization (inference): the CPU kernel's per-pixel loop against the
// reference, and the reference against the NCHW BatchNormalization permuted. Odd channel counts,
// and a tensor large enough (2 x 40 x 24 x 24 = 46080 values) for the pixels to be split over
// the threads.
TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, ChannelsLastBatchNorm, {"com.tandem:BatchNormalization"}) {
  const std::vector<Shape> shapes = {{2, 3, 5, 7}, {1, 16, 1, 1}, {3, 17, 9, 1}, {2, 40, 24, 24}};
  uint32_t seed = 7200;
  for (const Shape& s : shapes) {
    for (bool constant : {true, false}) {
      const int64_t c = s[1];
      const Tensor var = positive_variance(c, seed++);
      const Tensor x = random_tensor(DataType::kFloat32, s, seed++, 3.0f);
      std::vector<Tensor> in{nhwc_of(x), random_tensor(DataType::kFloat32, {c}, seed++),
                             random_tensor(DataType::kFloat32, {c}, seed++),
                             random_tensor(DataType::kFloat32, {c}, seed++), var};
      SCOPED_TRACE("channels-last BatchNormalization " + shape_str(s));
      auto op = [&] {
        return OpTest("BatchNormalization")
            .domain(kFusedDomain)
            .attr("epsilon", 1e-3f)
            .attr("channels_last", int64_t{1})
            .inputs(in)
            .constants({false, constant, constant, constant, constant});
      };
      check(op());
      std::vector<Tensor> nchw_in = in;
      nchw_in[0] = x;
      const Tensor want =
          nhwc_of(OpTest("BatchNormalization").attr("epsilon", 1e-3f).inputs(nchw_in).run_ref()[0]);
      EXPECT_EQ(max_abs_diff(op().run_ref()[0], want), 0.0);
    }
  }
}

// The channels-last BN's fused activation and X in parts (ops/layout.h): the CPU kernel against
// the reference over every activation (the vector loop's and the others) and part layouts with
// full vectors and tails; the reference against the ONNX BN of the joined NCHW X followed by the
// activation, written out here.
TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, ChannelsLastBatchNormActivationAndParts,
                       {"com.tandem:BatchNormalization"}) {
  struct Case {
    Shape nhw;
    std::vector<int64_t> parts;  // channels of each part of X
  };
  const std::vector<Case> cases = {{{2, 5, 7}, {5}},
                                   {{1, 3, 3}, {16, 3}},
                                   {{2, 4, 6}, {32, 32, 7}},
                                   {{1, 9, 9}, {64, 17, 40}},
                                   {{2, 24, 24}, {48, 32, 32}}};
  uint32_t seed = 7400;
  for (const Case& k : cases) {
    for (const Act& act : activations()) {
      int64_t c = 0;
      std::vector<Tensor> parts_nchw, parts;
      for (int64_t pc : k.parts) {
        parts_nchw.push_back(
            random_tensor(DataType::kFloat32, {k.nhw[0], pc, k.nhw[1], k.nhw[2]}, seed++, 3.0f));
        parts.push_back(nhwc_of(parts_nchw.back()));
        c += pc;
      }
      std::vector<Tensor> in{parts[0], random_tensor(DataType::kFloat32, {c}, seed++),
                             random_tensor(DataType::kFloat32, {c}, seed++),
                             random_tensor(DataType::kFloat32, {c}, seed++),
                             positive_variance(c, seed++)};
      in.insert(in.end(), parts.begin() + 1, parts.end());
      std::vector<bool> constants(in.size(), false);
      std::fill(constants.begin() + 1, constants.begin() + 5, true);
      SCOPED_TRACE("channels-last BatchNormalization, " + std::to_string(k.parts.size()) +
                   " parts, last " + shape_str(parts.back().shape()) + ", activation '" + act.name +
                   "'");
      auto op = [&] {
        OpTest t = OpTest("BatchNormalization")
                       .domain(kFusedDomain)
                       .attr("epsilon", 1e-3f)
                       .attr("channels_last", int64_t{1})
                       .inputs(in)
                       .constants(constants);
        if (!act.name.empty()) t.attr("activation", act.name);
        if (!act.params.empty()) t.attr("activation_params", act.params);
        return t;
      };
      check(op());
      // The oracle: Concat of the NCHW parts, the ONNX BN, then the activation.
      std::vector<Tensor> nchw_in{
          OpTest("Concat").attr("axis", int64_t{1}).inputs(parts_nchw).run_ref()[0]};
      nchw_in.insert(nchw_in.end(), in.begin() + 1, in.begin() + 5);
      Tensor want =
          nhwc_of(OpTest("BatchNormalization").attr("epsilon", 1e-3f).inputs(nchw_in).run_ref()[0]);
      Node node;
      if (!act.name.empty()) node.attrs["activation"] = attr_string(act.name);
      if (!act.params.empty()) node.attrs["activation_params"] = attr_floats(act.params);
      const FusedActivation fa = read_fused_activation(node);
      for (int64_t i = 0; i < want.numel(); ++i)
        want.data<float>()[i] = apply_activation(fa, want.data<float>()[i]);
      EXPECT_LE(max_abs_diff(op().run_ref()[0], want), 1e-6);
    }
  }
}

TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, LayoutTransforms,
                       {"com.tandem:ToChannelsLast", "com.tandem:ToChannelsFirst"}) {
  // 3 channels (RGB) take their own loop, split over pixels: up to 4 pixels, odd counts, more
  // than one chunk of 4096, and at 2 threads.
  const std::vector<Shape> shapes = {
      {1, 3, 64, 64}, {2, 5, 7, 3}, {1, 1, 4, 4}, {1, 16, 1, 1},  {3, 17, 9, 1},   {1, 33, 31, 17},
      {1, 3, 2, 2},   {2, 3, 1, 5}, {1, 3, 3, 3}, {2, 3, 67, 65}, {2, 3, 257, 256}};
  uint32_t seed = 7000;
  for (const Shape& s : shapes) {
    const Tensor x = random_tensor(DataType::kFloat32, s, seed++);
    const Tensor nhwc = nhwc_of(x);
    check(OpTest("ToChannelsLast").domain(kFusedDomain).input(x));
    check(OpTest("ToChannelsLast").domain(kFusedDomain).input(x).threads(2));
    check(OpTest("ToChannelsFirst").domain(kFusedDomain).input(nhwc));
    // The reference kernels against the permutation written out here.
    EXPECT_EQ(
        max_abs_diff(OpTest("ToChannelsLast").inputs({x}).domain(kFusedDomain).run_ref()[0], nhwc),
        0.0);
    EXPECT_EQ(
        max_abs_diff(OpTest("ToChannelsFirst").inputs({nhwc}).domain(kFusedDomain).run_ref()[0], x),
        0.0);
  }
}

// 3x3 convs that the CPU backend computes by Winograd's algorithm where oneDNN has it (AVX-512):
// every Y within the tables' tolerance of the reference, in both layouts, with B, a residual Z
// (sum post-op), a Z of one value per channel, shared or per item (folded into the bias), channel
// counts that are not a multiple of the vector width and an odd image. The plans must actually
// take Winograd on such a CPU, so the test cannot pass on the direct kernel alone.
TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, WinogradConvs, {"Conv", "com.tandem:FusedConv"}) {
  struct Case {
    std::string name;
    Shape x, w;
  };
  const std::vector<Case> cases = {
      {"16->16 at 32x32", {1, 16, 32, 32}, {16, 16, 3, 3}},
      {"20->24 at 29x31 batch 2", {2, 20, 29, 31}, {24, 20, 3, 3}},
      {"64->48 at 32x32 batch 2", {2, 64, 32, 32}, {48, 64, 3, 3}},
  };
  const int64_t plans_before = cpu::winograd_conv_plans();
  uint32_t seed = 7500;
  std::map<std::string, Attribute> pad1{{"pads", attr_ints({1, 1, 1, 1})}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const Tensor x = random_tensor(DataType::kFloat32, c.x, seed++, 2.0f);
    const Tensor w = random_tensor(DataType::kFloat32, c.w, seed++);
    const Tensor b = random_tensor(DataType::kFloat32, {c.w[0]}, seed++);
    check(OpTest("Conv").inputs({x, w, b}).attrs(pad1).constants({false, true, true}));
    const Shape y_shape = OpTest("Conv").inputs({x, w}).attrs(pad1).run_ref()[0].shape();
    const Tensor z_full = random_tensor(DataType::kFloat32, y_shape, seed++);
    const Tensor z_item = random_tensor(DataType::kFloat32, {c.x[0], c.w[0], 1, 1}, seed++);
    const Tensor z_channel = random_tensor(DataType::kFloat32, {1, c.w[0], 1, 1}, seed++);
    for (bool cl : {false, true}) {
      for (const Tensor* z : {&z_full, &z_item, &z_channel}) {
        for (bool bias : {false, true}) {
          std::map<std::string, Attribute> attrs = pad1;
          attrs["activation"] = attr_string("Relu");
          std::vector<Tensor> in{x, w, bias ? b : Tensor(), *z};
          if (cl) {
            attrs["channels_last"] = attr_int(1);
            in[0] = nhwc_of(x);
            in[3] = nhwc_of(*z);
          }
          SCOPED_TRACE(std::string(cl ? "channels-last " : "") +
                       (z == &z_full   ? "residual Z"
                        : z == &z_item ? "Z per channel and item"
                                       : "Z per channel") +
                       (bias ? " B" : ""));
          check(fused_conv(in, attrs).constants({false, true, true, false}));
        }
      }
    }
    // Each item of a batch bit for bit as that item alone (the parallel runner splits batches),
    // at 1 and 2 threads.
    if (c.x[0] > 1) {
      for (int threads : {1, 2}) {
        auto conv = [&](const Tensor& xi) {
          return OpTest("Conv")
              .inputs({xi, w, b})
              .attrs(pad1)
              .constants({false, true, true})
              .threads(threads)
              .run(cpu_backend())
              .outputs[0];
        };
        const Tensor batch = conv(x);
        const int64_t x_item = x.numel() / c.x[0], y_item = batch.numel() / c.x[0];
        for (int64_t i = 0; i < c.x[0]; ++i) {
          Shape xs = c.x;
          xs[0] = 1;
          Tensor xi(DataType::kFloat32, xs);
          std::copy_n(x.data<float>() + i * x_item, x_item, xi.data<float>());
          const Tensor alone = conv(xi);
          EXPECT_EQ(std::memcmp(alone.data<float>(), batch.data<float>() + i * y_item,
                                y_item * sizeof(float)),
                    0)
              << "item " << i << " of the batch differs from that item alone, " << threads
              << " threads";
        }
      }
    }
  }
  // oneDNN 2.6 has Winograd kernels for AVX-512 cores only (none under DNNL_MAX_CPU_ISA=AVX2).
  // The ISA values are bit sets: an AVX-512 core's has all of avx512_core's bits.
  // TANDEM_CONV_WINOGRAD=0 (the ctest winograd_off) must keep every plan direct.
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto avx512 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
  const char* off = std::getenv("TANDEM_CONV_WINOGRAD");
  if (off && std::string(off) == "0") {
    EXPECT_EQ(cpu::winograd_conv_plans(), plans_before);
  } else if ((isa & avx512) == avx512) {
    EXPECT_GT(cpu::winograd_conv_plans(), plans_before);
  }
}

// FusedConv with channels_last: the CPU kernel against the reference one, and the reference one
// against the NCHW FusedConv on permuted tensors.
TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, ChannelsLastFusedConv, {"com.tandem:FusedConv"}) {
  uint32_t seed = 7100;
  for (const ConvGeometry& g : geometries()) {
    for (const Act& act : {Act{"", {}}, Act{"Relu", {}}, Act{"HardSwish", {}}, Act{"SiLU", {}}}) {
      for (int variant = 0; variant < 4; ++variant) {
        const bool bias = variant & 1, z = variant & 2;
        std::map<std::string, Attribute> attrs;
        if (g.group != 1) attrs["group"] = attr_int(g.group);
        if (!g.strides.empty()) attrs["strides"] = attr_ints(g.strides);
        if (!g.pads.empty()) attrs["pads"] = attr_ints(g.pads);
        if (!g.dilations.empty()) attrs["dilations"] = attr_ints(g.dilations);
        if (!act.name.empty()) attrs["activation"] = attr_string(act.name);
        std::vector<Tensor> in{random_tensor(DataType::kFloat32, g.x, seed++, 2.0f),
                               random_tensor(DataType::kFloat32, g.w, seed++)};
        in.push_back(bias ? random_tensor(DataType::kFloat32, {g.w[0]}, seed++) : Tensor());
        const Shape y_shape =
            OpTest("FusedConv").inputs(in).attrs(attrs).domain(kFusedDomain).run_ref()[0].shape();
        if (z) in.push_back(random_tensor(DataType::kFloat32, y_shape, seed++));
        const Tensor nchw =
            OpTest("FusedConv").inputs(in).attrs(attrs).domain(kFusedDomain).run_ref()[0];
        std::vector<Tensor> cl_in = in;
        cl_in[0] = nhwc_of(in[0]);
        if (z) cl_in[3] = nhwc_of(in[3]);
        std::map<std::string, Attribute> cl_attrs = attrs;
        cl_attrs["channels_last"] = attr_int(1);
        const std::string name = "channels-last FusedConv " + g.name + " " + act.name +
                                 (bias ? " B" : "") + (z ? " Z" : "");
        SCOPED_TRACE(name);
        check(fused_conv(cl_in, cl_attrs).constants({false, true, true, false}));
        const Tensor cl =
            OpTest("FusedConv").inputs(cl_in).attrs(cl_attrs).domain(kFusedDomain).run_ref()[0];
        EXPECT_LE(max_abs_diff(cl, nhwc_of(nchw)), 1e-6 * (1 + max_abs(nchw))) << name;
      }
    }
  }
}

TANDEM_FAST_TABLE_TEST(CpuVsRefCnn, ChannelsLastPools,
                       {"com.tandem:MaxPool", "com.tandem:AveragePool",
                        "com.tandem:GlobalAveragePool", "com.tandem:GlobalMaxPool"}) {
  struct Case {
    std::string op;
    Shape x;
    std::map<std::string, Attribute> attrs;
  };
  const std::vector<Case> cases = {
      {"MaxPool",
       {1, 16, 17, 17},
       {{"kernel_shape", attr_ints({3, 3})},
        {"strides", attr_ints({2, 2})},
        {"pads", attr_ints({1, 1, 1, 1})}}},
      {"MaxPool", {2, 5, 8, 7}, {{"kernel_shape", attr_ints({2, 2})}, {"ceil_mode", attr_int(1)}}},
      {"AveragePool",
       {1, 24, 9, 9},
       {{"kernel_shape", attr_ints({3, 3})},
        {"pads", attr_ints({1, 1, 1, 1})},
        {"count_include_pad", attr_int(1)}}},
      {"AveragePool",
       {2, 3, 10, 7},
       {{"kernel_shape", attr_ints({3, 2})}, {"strides", attr_ints({2, 1})}}},
      {"GlobalAveragePool", {1, 96, 8, 8}, {}},
      {"GlobalAveragePool", {2, 5, 3, 7}, {}},
      {"GlobalMaxPool", {2, 40, 4, 4}, {}},
      {"GlobalMaxPool", {1, 3, 1, 1}, {}},
      // More rows than one float block of the average (256), vector tails, items over threads.
      {"GlobalAveragePool", {2, 37, 20, 17}, {}},
      {"GlobalAveragePool", {2, 64, 56, 56}, {}},
      {"GlobalMaxPool", {3, 33, 17, 19}, {}},
  };
  uint32_t seed = 7300;
  for (const Case& c : cases) {
    const Tensor x = random_tensor(DataType::kFloat32, c.x, seed++, 3.0f);
    std::map<std::string, Attribute> attrs = c.attrs;
    attrs["channels_last"] = attr_int(1);
    const std::string name = "channels-last " + c.op + " " + shape_str(c.x);
    check(OpTest(c.op).domain(kFusedDomain).attrs(attrs).input(nhwc_of(x)));
    // The reference channels-last pool is the ONNX pool on NCHW, permuted.
    const Tensor want = nhwc_of(OpTest(c.op).input(x).attrs(c.attrs).run_ref()[0]);
    EXPECT_EQ(
        max_abs_diff(
            OpTest(c.op).inputs({nhwc_of(x)}).attrs(attrs).domain(kFusedDomain).run_ref()[0], want),
        0.0)
        << name;
  }
}

}  // namespace
}  // namespace tandem

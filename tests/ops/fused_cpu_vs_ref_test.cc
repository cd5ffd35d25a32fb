// The CPU backend's hand-written kernels for the transformer-ish ops against the reference
// kernels: Gelu (ONNX and fused), the fused GroupNorm and Attention (com.tandem),
// InstanceNormalization and LayerNormalization. Each table row runs on both backends on the same
// random inputs and is compared with max |cpu - ref| <= tol * (1 + max |ref|); each row also says
// whether the fast path must take it or hand it to the reference kernel, so a fast path that
// silently stops applying (or one that takes a case it cannot do) fails too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/simd.h"
#include "fast_vs_ref.h"
#include "op_test_util.h"
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
using testing::OpRun;
using testing::OpTest;
using testing::random_uniform;
using testing::Tolerance;

// Runs `t` on both backends and compares every output within tol * (1 + max |ref|). `fast`:
// whether the CPU kernel must compute it itself; otherwise the CPU kernel is made and hands
// every call to the reference kernel.
void check(const OpTest& t, bool fast, double tol = 1e-5) {
  expect_fast_matches_ref(t, cpu_backend(), Tolerance::scaled(tol),
                          Expect::takes_or_hands_over(fast));
}

// Runs `body` with the hand-written kernels capped at each vector width this CPU has (AVX-512,
// AVX2, SSE2: simd.h), so every version is checked, not only the widest.
template <class F>
void at_each_simd_level(F body) {
  for (int level : {2, 1, 0}) {
    SCOPED_TRACE("simd level " + std::to_string(level));
    cpu::simd::cap_level(level);
    body();
  }
  cpu::simd::cap_level(2);
}

// ---- Gelu -----------------------------------------------------------------------------------

TANDEM_FAST_TABLE_TEST(FusedCpuVsRef, GeluTable, {"Gelu", "com.tandem:Gelu"}) {
  at_each_simd_level([&] {
    const std::vector<Shape> shapes = {{1}, {15}, {16}, {17}, {3, 5, 7}, {2, 1000}, {4, 4097}};
    uint32_t seed = 1;
    for (const char* op : {"Gelu", "com.tandem:Gelu"}) {
      for (const char* approx : {"none", "tanh"}) {
        for (const Shape& s : shapes) {
          // Wide inputs reach both tails of erf / tanh.
          const Tensor x = random_uniform(s, seed++, -9.0f, 9.0f);
          check(OpTest(op).attr("approximate", approx).input(x), true);
        }
      }
    }
  });
}

TANDEM_FAST_TABLE_TEST(FusedCpuVsRef, GeGLUTable, {"com.tandem:GeGLU"}) {
  at_each_simd_level([&] {
    struct Case {
      Shape x;
      bool fast = true;
    };
    // Odd last dims: the halves differ (ceil / floor) and only broadcast in corner cases, which
    // the reference kernel computes as the Slices and Mul did.
    const std::vector<Case> cases = {{{1, 1024, 384}}, {{3, 10}},       {{2, 5, 34}},
                                     {{7, 2}},         {{4, 3}, false}, {{5, 1}, false}};
    uint32_t seed = 50;
    for (const char* approx : {"none", "tanh"}) {
      for (const Case& c : cases) {
        check(OpTest("com.tandem:GeGLU")
                  .attr("approximate", approx)
                  .input(random_uniform(c.x, seed++, -4, 4)),
              c.fast);
      }
    }
  });
}

TEST(FusedCpuVsRef, GeluKeepsNaNAndInfinities) {
  Tensor x(DataType::kFloat32, {5});
  const float inf = std::numeric_limits<float>::infinity();
  const float vals[] = {std::nanf(""), inf, -inf, 0.0f, -0.0f};
  std::copy(vals, vals + 5, x.data<float>());
  for (const char* approx : {"none", "tanh"}) {
    OpRun r = OpTest("com.tandem:Gelu").input(x).attr("approximate", approx).run(cpu_backend());
    const float* y = r.outputs[0].data<float>();
    EXPECT_TRUE(std::isnan(y[0])) << approx;
    EXPECT_EQ(y[1], inf) << approx;
    EXPECT_EQ(y[3], 0.0f) << approx;
  }
}

// ---- GroupNorm (fused) ----------------------------------------------------------------------

struct GroupNormCase {
  std::string name;
  Shape x;
  int64_t groups;
  Shape scale, bias;  // empty: input omitted
  std::string activation;
  float eps = 1e-5f;
  float offset = 0.0f;  // added to X (a large mean)
  bool fast = true;
};

TANDEM_FAST_TABLE_TEST(FusedCpuVsRef, GroupNormTable, {"com.tandem:GroupNorm"}) {
  at_each_simd_level([&] {
    const std::vector<GroupNormCase> cases = {
        {"torch [C,1,1]", {2, 8, 5, 7}, 4, {8, 1, 1}, {8, 1, 1}, ""},
        {"torch SiLU", {2, 8, 5, 7}, 4, {8, 1, 1}, {8, 1, 1}, "SiLU"},
        {"flagship size", {1, 32, 16, 16}, 8, {32, 1, 1}, {32, 1, 1}, "SiLU"},
        {"rank 3", {3, 6, 9}, 3, {6, 1}, {6, 1}, "SiLU"},
        {"rank 5", {1, 4, 3, 2, 5}, 2, {4, 1, 1, 1}, {4, 1, 1, 1}, ""},
        {"one group", {2, 5, 3, 3}, 1, {5, 1, 1}, {5, 1, 1}, ""},
        {"a group per channel", {2, 5, 3, 3}, 5, {5, 1, 1}, {5, 1, 1}, ""},
        {"[1,C,1,1] params", {2, 6, 4, 4}, 3, {1, 6, 1, 1}, {1, 6, 1, 1}, "SiLU"},
        {"scalar params", {2, 6, 4, 4}, 3, {1}, {}, ""},
        {"no params", {2, 6, 4, 4}, 2, {}, {}, "SiLU"},
        {"bias only", {2, 6, 4, 4}, 2, {}, {6, 1, 1}, ""},
        {"epsilon 0.01", {2, 6, 4, 4}, 2, {6, 1, 1}, {6, 1, 1}, "", 1e-2f},
        {"mean 100", {2, 6, 5, 5}, 2, {6, 1, 1}, {6, 1, 1}, "", 1e-5f, 100.0f},
        {"1x1 spatial", {3, 16, 1, 1}, 4, {16, 1, 1}, {16, 1, 1}, "SiLU"},
        // Reference kernel: groups that split channels, parameters along another axis.
        {"groups split channels", {2, 6, 2}, 4, {6, 1}, {6, 1}, "", 1e-5f, 0.0f, false},
        {"[C] params on the last axis", {2, 4, 3, 4}, 2, {4}, {4}, "", 1e-5f, 0.0f, false},
    };
    uint32_t seed = 100;
    for (const GroupNormCase& c : cases) {
      std::vector<Tensor> inputs{random_uniform(c.x, seed++, c.offset - 1, c.offset + 1)};
      inputs.push_back(c.scale.empty() ? Tensor() : random_uniform(c.scale, seed++, 0.5f, 1.5f));
      inputs.push_back(c.bias.empty() ? Tensor() : random_uniform(c.bias, seed++));
      std::map<std::string, Attribute> attrs{{"num_groups", attr_int(c.groups)},
                                             {"epsilon", attr_float(c.eps)}};
      if (!c.activation.empty()) attrs["activation"] = attr_string(c.activation);
      SCOPED_TRACE("GroupNorm " + c.name);
      check(OpTest("com.tandem:GroupNorm").attrs(attrs).inputs(inputs), c.fast, 1e-4);
    }
  });
}

// ---- InstanceNormalization, LayerNormalization ----------------------------------------------

TANDEM_FAST_TABLE_TEST(FusedCpuVsRef, InstanceNormTable, {"InstanceNormalization"}) {
  at_each_simd_level([&] {
    const std::vector<Shape> shapes = {{2, 3, 5, 7}, {1, 32, 64}, {2, 4, 3, 3, 3}, {3, 2, 1}};
    uint32_t seed = 200;
    for (const Shape& s : shapes) {
      for (float offset : {0.0f, 50.0f}) {
        std::vector<Tensor> inputs{random_uniform(s, seed++, offset - 1, offset + 1),
                                   random_uniform({s[1]}, seed++), random_uniform({s[1]}, seed++)};
        check(OpTest("InstanceNormalization").attr("epsilon", 1e-5f).inputs(inputs), true, 1e-4);
      }
    }
  });
}

struct LayerNormCase {
  Shape x;
  int64_t axis;
  Shape scale, bias;  // empty: omitted
  int outputs = 1;
  float eps = 1e-5f;
  bool fast = true;
};

TANDEM_FAST_TABLE_TEST(FusedCpuVsRef, LayerNormTable, {"LayerNormalization"}) {
  at_each_simd_level([&] {
    const std::vector<LayerNormCase> cases = {
        {{4, 48}, -1, {48}, {48}},
        {{2, 3, 64}, -1, {64}, {64}, 1, 1e-12f},
        {{2, 16, 33}, -1, {33}, {33}, 3},
        {{2, 3, 5}, 1, {3, 5}, {3, 5}, 3},
        {{2, 3, 5}, 0, {2, 3, 5}, {}},
        {{7, 20}, -1, {20}, {}},
        {{7, 20}, -1, {1}, {1}},
        {{5, 1}, -1, {1}, {1}},
        // Reference kernel: parameters broadcast within the normalized shape.
        {{2, 3, 5}, 1, {1, 5}, {1, 5}, 1, 1e-5f, false},
    };
    uint32_t seed = 300;
    for (const LayerNormCase& c : cases) {
      std::vector<Tensor> inputs{random_uniform(c.x, seed++, 2.0f, 4.0f)};
      inputs.push_back(c.scale.empty() ? Tensor() : random_uniform(c.scale, seed++));
      if (!c.bias.empty()) inputs.push_back(random_uniform(c.bias, seed++));
      std::map<std::string, Attribute> attrs{{"axis", attr_int(c.axis)},
                                             {"epsilon", attr_float(c.eps)}};
      check(OpTest("LayerNormalization").attrs(attrs).inputs(inputs).outputs(c.outputs), c.fast,
            1e-4);
    }
  });
}

// ---- Attention (fused) ----------------------------------------------------------------------

struct AttentionCase {
  std::string name;
  Shape q, k, v;  // physical shapes (k is MatMul's right operand once permuted: [.., D, Sk])
  std::vector<int64_t> q_perm, k_perm, v_perm, out_perm;
  Shape mask;  // additive, empty: none
  Shape keep;  // bool (causal), empty: none
  bool fast = true;
};

// Causal keep mask of shape s (last two dims [Sq, Sk]): key j visible from query i when j <= i.
Tensor causal(const Shape& s) {
  Tensor t(DataType::kBool, s);
  const int64_t sq = s[s.size() - 2], sk = s.back();
  for (int64_t i = 0; i < t.numel(); ++i) t.data<bool>()[i] = (i % sk) <= (i / sk) % sq;
  return t;
}

TANDEM_FAST_TABLE_TEST(FusedCpuVsRef, AttentionTable, {"com.tandem:Attention"}) {
  at_each_simd_level([&] {
    const std::vector<int64_t> heads{0, 2, 1, 3}, keys{0, 2, 3, 1};
    const std::vector<AttentionCase> cases = {
        {"plain [B,H,S,D]", {2, 3, 37, 16}, {2, 3, 16, 41}, {2, 3, 41, 16}, {}, {}, {}, {}},
        {"flagship self, heads absorbed",
         {1, 300, 3, 16},
         {1, 300, 3, 16},
         {1, 300, 3, 16},
         heads,
         keys,
         heads,
         heads},
        {"flagship cross",
         {1, 70, 3, 16},
         {1, 77, 3, 16},
         {1, 77, 3, 16},
         heads,
         keys,
         heads,
         heads},
        {"D 24, Dv 40", {1, 2, 19, 24}, {1, 2, 24, 50}, {1, 2, 50, 40}, {}, {}, {}, {}},
        {"Dv 5, Sk 3", {2, 1, 9, 7}, {2, 1, 7, 3}, {2, 1, 3, 5}, {}, {}, {}, {}},
        {"one query, one key", {1, 1, 1, 16}, {1, 1, 16, 1}, {1, 1, 1, 16}, {}, {}, {}, {}},
        {"many query blocks", {1, 1, 200, 8}, {1, 1, 8, 150}, {1, 1, 150, 8}, {}, {}, {}, {}},
        {"rank 3", {6, 20, 16}, {6, 16, 20}, {6, 20, 16}, {}, {}, {}, {}},
        {"rank 2", {20, 16}, {16, 21}, {21, 16}, {}, {}, {}, {}},
        {"K and V shared by heads", {2, 4, 11, 16}, {1, 1, 16, 13}, {2, 1, 13, 16}, {}, {}, {}, {}},
        {"bert mask [B,1,1,Sk]",
         {2, 16, 4, 16},
         {2, 16, 4, 16},
         {2, 16, 4, 16},
         heads,
         keys,
         heads,
         heads,
         {2, 1, 1, 16}},
        {"mask [Sq,Sk]", {1, 2, 10, 8}, {1, 2, 8, 12}, {1, 2, 12, 8}, {}, {}, {}, {}, {10, 12}},
        {"mask per head",
         {1, 2, 10, 8},
         {1, 2, 8, 12},
         {1, 2, 12, 8},
         {},
         {},
         {},
         {},
         {1, 2, 10, 12}},
        {"gpt causal keep",
         {1, 8, 4, 8},
         {1, 8, 4, 8},
         {1, 8, 4, 8},
         heads,
         keys,
         heads,
         heads,
         {},
         {1, 1, 8, 8}},
        {"mask and keep",
         {2, 9, 2, 16},
         {2, 9, 2, 16},
         {2, 9, 2, 16},
         heads,
         keys,
         heads,
         heads,
         {2, 1, 1, 9},
         {9, 9}},
        // Reference kernel: a mask that widens the scores, operands of different ranks.
        {"mask widens",
         {1, 1, 5, 8},
         {1, 1, 8, 6},
         {1, 1, 6, 8},
         {},
         {},
         {},
         {},
         {2, 3, 5, 6},
         {},
         false},
        {"ranks differ", {2, 5, 8}, {1, 2, 8, 6}, {2, 6, 8}, {}, {}, {}, {}, {}, {}, false},
    };
    uint32_t seed = 400;
    for (const AttentionCase& c : cases) {
      SCOPED_TRACE("Attention " + c.name);
      std::vector<Tensor> inputs{random_uniform(c.q, seed++, -2, 2),
                                 random_uniform(c.k, seed++, -2, 2), random_uniform(c.v, seed++)};
      inputs.push_back(c.mask.empty() ? Tensor() : random_uniform(c.mask, seed++, -3, 0));
      if (!c.keep.empty()) inputs.push_back(causal(c.keep));
      std::map<std::string, Attribute> attrs{{"scale", attr_float(0.25f)}};
      if (!c.keep.empty()) attrs["fill"] = attr_float(-3.4028235e38f);
      const std::pair<const char*, const std::vector<int64_t>*> perms[] = {
          {"q_perm", &c.q_perm},
          {"k_perm", &c.k_perm},
          {"v_perm", &c.v_perm},
          {"out_perm", &c.out_perm}};
      for (auto& [key, p] : perms)
        if (!p->empty()) attrs[key] = attr_ints(*p);
      for (int threads : {1, 2})
        check(OpTest("com.tandem:Attention").attrs(attrs).inputs(inputs).threads(threads), c.fast);
    }
  });
}

// A row whose keys are all masked out (fill everywhere) is uniform, as Softmax of equal values.
TEST(FusedCpuVsRef, AttentionFullyMaskedRowIsUniform) {
  Tensor q = random_uniform({1, 1, 2, 4}, 1), k = random_uniform({1, 1, 4, 3}, 2);
  Tensor v = random_uniform({1, 1, 3, 4}, 3);
  Tensor keep(DataType::kBool, {1, 1, 2, 3});
  for (int i = 0; i < 6; ++i) keep.data<bool>()[i] = i >= 3;  // row 0 fully masked
  std::map<std::string, Attribute> attrs{{"fill", attr_float(-3.4028235e38f)}};
  check(OpTest("com.tandem:Attention").attrs(attrs).inputs({q, k, v, Tensor(), keep}), true);
  OpRun r = OpTest("com.tandem:Attention")
                .inputs({q, k, v, Tensor(), keep})
                .attrs(attrs)
                .run(cpu_backend());
  for (int c = 0; c < 4; ++c) {
    const float* vd = v.data<float>();
    EXPECT_NEAR(r.outputs[0].data<float>()[c], (vd[c] + vd[4 + c] + vd[8 + c]) / 3, 1e-6);
  }
}

}  // namespace
}  // namespace tandem

namespace tandem {
namespace {

// ---- FusedMatMul ----------------------------------------------------------------------------

TANDEM_FAST_TABLE_TEST(FusedCpuVsRef, FusedMatMulTable, {"com.tandem:FusedMatMul"}) {
  struct Case {
    Shape a, b, bias, residual;  // empty: omitted
    bool fast = true;
  };
  const std::vector<Case> cases = {
      {{16, 64}, {64, 64}, {64}, {}},
      {{197, 1, 48}, {48, 144}, {144}, {}},  // [seq, batch, dim] x weight: one folded GEMM
      {{5, 1, 8}, {8, 8}, {8}, {5, 1, 8}},
      {{1, 1024, 48}, {48, 384}, {384}, {}},
      {{1, 8, 32}, {32, 32}, {32}, {1, 8, 32}},
      {{2, 5, 7}, {7, 3}, {1, 3}, {2, 5, 3}},
      {{3, 2, 5, 7}, {7, 9}, {9}, {}},
      {{5, 7}, {7, 3}, {}, {5, 3}},
      // Reference kernel: a bias that is not one row, a residual that broadcasts.
      {{5, 7}, {7, 3}, {5, 3}, {}, false},
      {{5, 7}, {7, 3}, {3}, {1, 3}, false},
  };
  uint32_t seed = 700;
  for (const Case& c : cases) {
    std::vector<Tensor> inputs{random_uniform(c.a, seed++), random_uniform(c.b, seed++),
                               c.bias.empty() ? Tensor() : random_uniform(c.bias, seed++),
                               c.residual.empty() ? Tensor() : random_uniform(c.residual, seed++)};
    check(OpTest("com.tandem:FusedMatMul").inputs(inputs), c.fast);
  }
}

// ---- Transpose, Resize ----------------------------------------------------------------------

// Exact data movement: any difference is a bug. The CPU kernel must compute it itself.
void check_exact(const OpTest& t) {
  expect_fast_matches_ref(t, cpu_backend(), Tolerance::exact_bytes(), Expect::takes());
}

Tensor iota(DataType dt, const Shape& s) {
  Tensor t(dt, s);
  for (int64_t i = 0; i < t.numel(); ++i) {
    switch (dt) {
      case DataType::kFloat32:
        t.data<float>()[i] = float(i) * 0.5f;
        break;
      case DataType::kInt64:
        t.data<int64_t>()[i] = i * 3 - 7;
        break;
      case DataType::kUInt8:
        t.data<uint8_t>()[i] = uint8_t(i * 7);
        break;
      case DataType::kFloat16:
        t.data<uint16_t>()[i] = uint16_t(i * 13);
        break;
      default:
        ADD_FAILURE() << "iota: dtype";
    }
  }
  return t;
}

TANDEM_FAST_TABLE_TEST(FusedCpuVsRef, TransposeTable, {"Transpose"}) {
  struct Case {
    Shape x;
    std::vector<int64_t> perm;  // empty: reverse
    DataType dtype = DataType::kFloat32;
  };
  const std::vector<Case> cases = {
      {{1, 48, 32, 32}, {0, 2, 3, 1}},  // NCHW -> NHWC
      {{1, 32, 32, 48}, {0, 3, 1, 2}},  // and back
      {{2, 7, 3, 5}, {0, 2, 1, 3}},     // head split: rows stay whole
      {{2, 7, 3, 5}, {0, 2, 3, 1}},     // K^T
      {{37, 45}, {}},                   // 2-D, reversed
      {{3, 33, 65}, {0, 2, 1}},         // tiles with ragged edges
      {{4, 1, 6}, {1, 2, 0}},           // a size-1 dim
      {{2, 3, 4}, {0, 1, 2}},           // identity
      {{2, 3, 4, 5, 6}, {0, 1, 4, 2, 3}},
      {{5, 6, 7}, {2, 0, 1}, DataType::kInt64},
      {{5, 6, 7}, {1, 2, 0}, DataType::kUInt8},
      {{9, 17}, {1, 0}, DataType::kFloat16},
      // The innermost dim moves somewhere other than a last-two swap.
      {{2, 3, 4}, {2, 1, 0}},
      {{2, 3, 4, 5}, {1, 3, 0, 2}},
  };
  for (const Case& c : cases) {
    std::map<std::string, Attribute> attrs;
    if (!c.perm.empty()) attrs["perm"] = attr_ints(c.perm);
    check_exact(OpTest("Transpose").attrs(attrs).input(iota(c.dtype, c.x)));
  }
}

TANDEM_FAST_TABLE_TEST(FusedCpuVsRef, ResizeNearestTable, {"Resize"}) {
  struct Case {
    std::string name;
    Shape x;
    std::vector<float> scales;  // empty: sizes
    Shape sizes;
    std::string coord = "asymmetric", nearest = "floor";
  };
  const std::vector<Case> cases = {
      {"2x", {1, 48, 16, 16}, {1, 1, 2, 2}, {}},
      {"3x1", {2, 3, 5, 7}, {1, 1, 3, 1}, {}},
      {"1x4 rank 3", {2, 5, 7}, {1, 1, 4}, {}},
      {"unchanged", {1, 2, 3, 3}, {1, 1, 1, 1}, {}},
      {"sizes", {1, 4, 6, 5}, {}, {1, 4, 12, 15}},
      // Another transform, a fractional scale, resizing channels: the tap tables cover them.
      {"half_pixel", {1, 2, 4, 4}, {1, 1, 2, 2}, {}, "half_pixel", "floor"},
      {"scale 2.5", {1, 2, 4, 4}, {1, 1, 2.5f, 2.5f}, {}, "asymmetric", "floor"},
      {"channels", {1, 2, 4, 4}, {1, 2, 1, 1}, {}, "asymmetric", "floor"},
  };
  for (const Case& c : cases) {
    std::map<std::string, Attribute> attrs{{"mode", attr_string("nearest")},
                                           {"coordinate_transformation_mode", attr_string(c.coord)},
                                           {"nearest_mode", attr_string(c.nearest)}};
    std::vector<Tensor> inputs{iota(DataType::kFloat32, c.x), Tensor()};
    if (!c.scales.empty()) {
      inputs.push_back(
          Tensor::from_vector(DataType::kFloat32, {int64_t(c.scales.size())}, c.scales));
    } else {
      inputs.push_back(Tensor());
      inputs.push_back(Tensor::from_vector(DataType::kInt64, {int64_t(c.sizes.size())},
                                           std::vector<int64_t>(c.sizes)));
    }
    SCOPED_TRACE("Resize " + c.name);
    check_exact(OpTest("Resize").opset(13).attrs(attrs).inputs(inputs));
  }
}

}  // namespace
}  // namespace tandem

// The transformer-ish fusion passes (fuse_gelu, fuse_group_norm, fuse_attention) on small models
// spelled the way torch exports them: each pattern must collapse into its fused node (the number
// of executed steps says so), and the fused model must compute what the unfused one computes on
// the reference backend (backend "ref" skips fusion). Near misses must be left alone.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "onnx_builder.h"
#include "tandem/model.h"

namespace tandem {
namespace {

using testing::add_int_attr;
using testing::add_ints_attr;
using testing::OnnxBuilder;

void add_float_attr(onnx::NodeProto& node, const std::string& name, float v) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

Tensor scalar(float v) {
  return Tensor::from_vector(DataType::kFloat32, {}, std::vector<float>{v});
}

Tensor random_floats(const Shape& s, uint32_t seed, float lo = -1.0f, float hi = 1.0f,
                     const std::string& name = "") {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t(DataType::kFloat32, s, name);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(gen);
  return t;
}

struct Runs {
  int fused_steps = 0, unfused_steps = 0;
  std::map<std::string, double> fused_ops;  // op types that ran in the fused model
  double max_diff = 0;
};

// Builds `path` twice (default backends: fused; "ref": as written), runs both on `inputs`.
Runs run_both(const std::string& path, const std::vector<Tensor>& inputs) {
  Runs r;
  Context fused_ctx;
  fused_ctx.thread_num = 2;
  fused_ctx.profile = true;
  Context ref_ctx;
  ref_ctx.backend = "ref";
  ref_ctx.thread_num = 1;
  Model fused = Model::build_from_file(path, fused_ctx);
  Model ref = Model::build_from_file(path, ref_ctx);
  std::vector<Tensor> a = fused.predict(inputs);
  std::vector<Tensor> b = ref.predict(inputs);
  r.fused_steps = fused.last_stats().num_steps;
  r.unfused_steps = ref.last_stats().num_steps;
  r.fused_ops = fused.last_stats().op_time_ms;
  EXPECT_EQ(a.size(), b.size());
  for (size_t o = 0; o < a.size() && o < b.size(); ++o) {
    EXPECT_EQ(a[o].shape(), b[o].shape());
    if (a[o].shape() != b[o].shape()) continue;
    for (int64_t i = 0; i < a[o].numel(); ++i) {
      const double x = a[o].data<float>()[i], y = b[o].data<float>()[i];
      r.max_diff = std::max(r.max_diff, std::abs(x - y));
    }
  }
  return r;
}

// ---- Gelu -----------------------------------------------------------------------------------

enum class Assoc { kXtThenHalf, kXHalfThenT, kXTimesTHalf };

// y = GELU(x) in the erf form, with the final products associated as `assoc`, the division by
// sqrt(2) as a Div or a Mul by 1/sqrt(2).
std::string gelu_erf_model(const std::string& dir, Assoc assoc, bool mul_form, bool leak = false) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 37});
  b.output("y", DataType::kFloat32, {-1, 37});
  if (leak) b.output("leak", DataType::kFloat32, {-1, 37});
  b.initializer("k", scalar(mul_form ? 0.70710678f : 1.4142135f));
  b.initializer("one", scalar(1.0f));
  b.initializer("half", scalar(0.5f));
  b.node(mul_form ? "Mul" : "Div", {"x", "k"}, {"d"});
  b.node("Erf", {"d"}, {"e"});
  b.node("Add", {"one", "e"}, {leak ? "leak" : "t"});
  if (leak) b.node("Identity", {"leak"}, {"t"});
  switch (assoc) {
    case Assoc::kXtThenHalf:
      b.node("Mul", {"x", "t"}, {"xt"});
      b.node("Mul", {"xt", "half"}, {"y"});
      break;
    case Assoc::kXHalfThenT:
      b.node("Mul", {"half", "x"}, {"xh"});
      b.node("Mul", {"xh", "t"}, {"y"});
      break;
    case Assoc::kXTimesTHalf:
      b.node("Mul", {"t", "half"}, {"th"});
      b.node("Mul", {"x", "th"}, {"y"});
      break;
  }
  return b.save(dir);
}

TEST(TransformerFusion, GeluErfFormsFuseInEveryAssociation) {
  int i = 0;
  for (Assoc assoc : {Assoc::kXtThenHalf, Assoc::kXHalfThenT, Assoc::kXTimesTHalf}) {
    for (bool mul_form : {false, true}) {
      SCOPED_TRACE(i);
      std::string path =
          gelu_erf_model(testing::temp_dir("gelu" + std::to_string(i++)), assoc, mul_form);
      Runs r = run_both(path, {random_floats({3, 37}, 1, -5, 5, "x")});
      EXPECT_EQ(r.unfused_steps, 5);
      EXPECT_EQ(r.fused_steps, 1);
      EXPECT_TRUE(r.fused_ops.count("Gelu"));
      EXPECT_LE(r.max_diff, 1e-5);
    }
  }
}

TEST(TransformerFusion, GeluIsNotFusedWhenAnIntermediateIsUsedElsewhere) {
  std::string path =
      gelu_erf_model(testing::temp_dir("gelu_leak"), Assoc::kXtThenHalf, false, true);
  Runs r = run_both(path, {random_floats({2, 37}, 2, -3, 3, "x")});
  EXPECT_FALSE(r.fused_ops.count("Gelu"));
  EXPECT_EQ(r.fused_steps, r.unfused_steps);
  EXPECT_LE(r.max_diff, 1e-6);
}

// GPT's tanh GELU: 0.5 * x * (1 + tanh(0.7978846 * (x + 0.044715 * x^3))), x^3 as x * (x * x)
// or Pow(x, 3).
std::string gelu_tanh_model(const std::string& dir, bool pow) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 8, 32});
  b.output("y", DataType::kFloat32, {-1, 8, 32});
  b.initializer("c", scalar(0.044715f));
  b.initializer("k", scalar(0.7978846f));
  b.initializer("one", scalar(1.0f));
  b.initializer("half", scalar(0.5f));
  b.initializer("three", scalar(3.0f));
  if (pow) {
    b.node("Pow", {"x", "three"}, {"cube"});
  } else {
    b.node("Mul", {"x", "x"}, {"sq"});
    b.node("Mul", {"x", "sq"}, {"cube"});
  }
  b.node("Mul", {"c", "cube"}, {"s"});
  b.node("Add", {"x", "s"}, {"inner"});
  b.node("Mul", {"k", "inner"}, {"u"});
  b.node("Tanh", {"u"}, {"th"});
  b.node("Add", {"one", "th"}, {"t"});
  b.node("Mul", {"x", "t"}, {"xt"});
  b.node("Mul", {"half", "xt"}, {"y"});
  return b.save(dir);
}

TEST(TransformerFusion, GeluTanhFormFuses) {
  for (bool pow : {false, true}) {
    SCOPED_TRACE(pow);
    std::string path = gelu_tanh_model(testing::temp_dir(pow ? "gelu_pow" : "gelu_tanh"), pow);
    Runs r = run_both(path, {random_floats({2, 8, 32}, 3, -6, 6, "x")});
    EXPECT_EQ(r.unfused_steps, pow ? 8 : 9);
    EXPECT_EQ(r.fused_steps, 1);
    EXPECT_TRUE(r.fused_ops.count("Gelu"));
    EXPECT_LE(r.max_diff, 1e-5);
  }
}

// GEGLU as torch exports `a, g = x.chunk(2, -1); a * gelu(g)` (erf GELU).
std::string geglu_model(const std::string& dir) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 7, 24});
  b.output("y", DataType::kFloat32, {-1, 7, 12});
  auto i64 = [](int64_t v) {
    return Tensor::from_vector(DataType::kInt64, {1}, std::vector<int64_t>{v});
  };
  b.initializer("last", i64(-1));
  b.initializer("one", i64(1));
  b.initializer("two", i64(2));
  b.initializer("zero", i64(0));
  b.initializer("sqrt2", scalar(1.4142135f));
  b.initializer("fone", scalar(1.0f));
  b.initializer("half", scalar(0.5f));
  b.node("Shape", {"x"}, {"shape"});
  add_int_attr(b.node("Gather", {"shape", "last"}, {"d"}), "axis", 0);
  b.node("Add", {"d", "one"}, {"d1"});
  b.node("Div", {"d1", "two"}, {"c"});
  b.node("Mul", {"c", "one"}, {"c1"});
  b.node("Mul", {"c", "two"}, {"c2"});
  b.node("Slice", {"x", "zero", "c1", "last"}, {"a"});
  b.node("Slice", {"x", "c1", "c2", "last"}, {"g"});
  b.node("Div", {"g", "sqrt2"}, {"gd"});
  b.node("Erf", {"gd"}, {"ge"});
  b.node("Add", {"ge", "fone"}, {"gt"});
  b.node("Mul", {"g", "gt"}, {"gm"});
  b.node("Mul", {"gm", "half"}, {"gelu"});
  b.node("Mul", {"a", "gelu"}, {"y"});
  return b.save(dir);
}

TEST(TransformerFusion, GeGLUFuses) {
  Runs r = run_both(geglu_model(testing::temp_dir("geglu")),
                    {random_floats({2, 7, 24}, 30, -3, 3, "x")});
  EXPECT_EQ(r.unfused_steps, 8);  // the shape arithmetic folds at plan time
  EXPECT_EQ(r.fused_steps, 1);
  EXPECT_TRUE(r.fused_ops.count("GeGLU"));
  EXPECT_LE(r.max_diff, 1e-5);
}

// ---- GroupNorm ------------------------------------------------------------------------------

// torch's GroupNorm(groups, 8 channels) export, then SiLU when `silu`; `residual` adds a graph
// input after the norm (which must stay an Add, not become the norm's bias).
std::string group_norm_model(const std::string& dir, bool silu, bool residual) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 8, 5, 6});
  if (residual) b.input("r", DataType::kFloat32, {-1, 8, 5, 6});
  b.output("y", DataType::kFloat32, {-1, 8, 5, 6});
  b.initializer("shape",
                Tensor::from_vector(DataType::kInt64, {3}, std::vector<int64_t>{0, 4, -1}));
  b.initializer("ones", Tensor::from_vector(DataType::kFloat32, {4}, std::vector<float>(4, 1.0f)));
  b.initializer("zeros", Tensor::from_vector(DataType::kFloat32, {4}, std::vector<float>(4, 0.0f)));
  b.initializer("gamma", random_floats({8, 1, 1}, 10, 0.5f, 1.5f));
  b.initializer("beta", random_floats({8, 1, 1}, 11));
  b.node("Reshape", {"x", "shape"}, {"r1"});
  auto& in = b.node("InstanceNormalization", {"r1", "ones", "zeros"}, {"n"});
  add_float_attr(in, "epsilon", 1e-5f);
  b.node("Shape", {"x"}, {"xs"});
  b.node("Reshape", {"n", "xs"}, {"r2"});
  b.node("Mul", {"r2", "gamma"}, {"g"});
  std::string cur = silu || residual ? "gb" : "y";
  b.node("Add", {"g", "beta"}, {cur});
  if (silu) {
    b.node("Sigmoid", {cur}, {"sg"});
    const std::string out = residual ? "act" : "y";
    b.node("Mul", {cur, "sg"}, {out});
    cur = out;
  }
  if (residual) b.node("Add", {cur, "r"}, {"y"});
  return b.save(dir);
}

TEST(TransformerFusion, GroupNormWithAndWithoutSiLUFuses) {
  for (bool silu : {false, true}) {
    SCOPED_TRACE(silu);
    std::string path = group_norm_model(testing::temp_dir(silu ? "gn_silu" : "gn"), silu, false);
    Runs r = run_both(path, {random_floats({2, 8, 5, 6}, 4, -2, 3, "x")});
    EXPECT_EQ(r.unfused_steps, silu ? 7 : 5);  // Shape folds at plan time
    EXPECT_EQ(r.fused_steps, 1);
    EXPECT_TRUE(r.fused_ops.count("GroupNorm"));
    EXPECT_LE(r.max_diff, 1e-5);
  }
}

TEST(TransformerFusion, GroupNormLeavesAResidualAddAlone) {
  std::string path = group_norm_model(testing::temp_dir("gn_residual"), true, true);
  Runs r = run_both(path, {random_floats({1, 8, 5, 6}, 5, -2, 2, "x"),
                           random_floats({1, 8, 5, 6}, 6, -2, 2, "r")});
  EXPECT_EQ(r.fused_steps, 2);  // GroupNorm(+SiLU), Add
  EXPECT_TRUE(r.fused_ops.count("Add"));
  EXPECT_LE(r.max_diff, 1e-5);
}

// ---- Attention ------------------------------------------------------------------------------

enum class Mask { kNone, kAdditive, kCausal };

// Multi-head attention over q, k, v given as [B, S, H, D] (the projections reshaped), the way
// torch exports it: Transposes to heads, MatMul, scale (Mul or Div), mask, Softmax, MatMul,
// Transpose back.
std::string attention_model(const std::string& dir, Mask mask, bool div, bool keep_transposes) {
  OnnxBuilder b(13);
  b.input("q", DataType::kFloat32, {-1, 10, 2, 16});
  b.input("k", DataType::kFloat32, {-1, 12, 2, 16});
  b.input("v", DataType::kFloat32, {-1, 12, 2, 8});
  if (mask == Mask::kAdditive) b.input("m", DataType::kFloat32, {-1, 1, 1, 12});
  b.output("y", DataType::kFloat32, {-1, 10, 2, 8});
  if (keep_transposes) b.output("qt", DataType::kFloat32, {-1, 2, 10, 16});
  b.initializer("scale", scalar(div ? 4.0f : 0.25f));
  b.initializer("fill", scalar(-3.4028235e38f));
  add_ints_attr(b.node("Transpose", {"q"}, {"qt"}), "perm", {0, 2, 1, 3});
  add_ints_attr(b.node("Transpose", {"k"}, {"kt"}), "perm", {0, 2, 3, 1});
  add_ints_attr(b.node("Transpose", {"v"}, {"vt"}), "perm", {0, 2, 1, 3});
  b.node("MatMul", {"qt", "kt"}, {"s"});
  b.node(div ? "Div" : "Mul", {"s", "scale"}, {"ss"});
  std::string scores = "ss";
  if (mask == Mask::kAdditive) {
    b.node("Add", {"ss", "m"}, {"sm"});
    scores = "sm";
  } else if (mask == Mask::kCausal) {
    // keep = tril(ones(10, 12)) as a bool constant.
    Tensor keep(DataType::kBool, {1, 1, 10, 12});
    for (int64_t i = 0; i < keep.numel(); ++i) keep.data<bool>()[i] = (i % 12) <= (i / 12);
    b.initializer("keep", keep);
    b.node("Where", {"keep", "ss", "fill"}, {"sw"});
    scores = "sw";
  }
  add_int_attr(b.node("Softmax", {scores}, {"p"}), "axis", -1);
  b.node("MatMul", {"p", "vt"}, {"o"});
  add_ints_attr(b.node("Transpose", {"o"}, {"y"}), "perm", {0, 2, 1, 3});
  return b.save(dir);
}

TEST(TransformerFusion, AttentionFusesWithItsHeadTransposes) {
  int i = 0;
  for (Mask mask : {Mask::kNone, Mask::kAdditive, Mask::kCausal}) {
    for (bool div : {false, true}) {
      SCOPED_TRACE(i);
      std::string path =
          attention_model(testing::temp_dir("attn" + std::to_string(i++)), mask, div, false);
      std::vector<Tensor> inputs{random_floats({2, 10, 2, 16}, 7, -2, 2, "q"),
                                 random_floats({2, 12, 2, 16}, 8, -2, 2, "k"),
                                 random_floats({2, 12, 2, 8}, 9, -1, 1, "v")};
      if (mask == Mask::kAdditive) {
        Tensor m(DataType::kFloat32, {2, 1, 1, 12}, "m");
        for (int64_t j = 0; j < m.numel(); ++j) m.data<float>()[j] = j % 5 == 4 ? -10000.f : 0.f;
        inputs.push_back(m);
      }
      Runs r = run_both(path, inputs);
      EXPECT_EQ(r.unfused_steps, mask == Mask::kNone ? 8 : 9);
      EXPECT_EQ(r.fused_steps, 1);
      EXPECT_TRUE(r.fused_ops.count("Attention"));
      EXPECT_LE(r.max_diff, 1e-5);
    }
  }
}

TEST(TransformerFusion, AttentionKeepsATransposeWhoseResultIsUsedElsewhere) {
  std::string path = attention_model(testing::temp_dir("attn_keep"), Mask::kNone, false, true);
  Runs r = run_both(path, {random_floats({1, 10, 2, 16}, 10, -2, 2, "q"),
                           random_floats({1, 12, 2, 16}, 11, -2, 2, "k"),
                           random_floats({1, 12, 2, 8}, 12, -1, 1, "v")});
  EXPECT_EQ(r.fused_steps, 2);  // Transpose(q) (a graph output too), Attention
  EXPECT_TRUE(r.fused_ops.count("Attention"));
  EXPECT_LE(r.max_diff, 1e-5);
}

// ---- FusedMatMul ----------------------------------------------------------------------------

// y = x @ W + b (+ x, a residual), the bias a constant or (`bias_input`) a graph input.
std::string projection_model(const std::string& dir, bool residual, bool bias_input) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {-1, 6, 32});
  if (bias_input) b.input("b", DataType::kFloat32, {32});
  b.output("y", DataType::kFloat32, {-1, 6, 32});
  b.initializer("w", random_floats({32, 32}, 20));
  if (!bias_input) b.initializer("b", random_floats({32}, 21));
  b.node("MatMul", {"x", "w"}, {"xw"});
  b.node("Add", {"b", "xw"}, {residual ? "p" : "y"});
  if (residual) b.node("Add", {"p", "x"}, {"y"});
  return b.save(dir);
}

TEST(TransformerFusion, MatMulBiasAndResidualFuse) {
  for (bool residual : {false, true}) {
    SCOPED_TRACE(residual);
    std::string path =
        projection_model(testing::temp_dir(residual ? "mm_res" : "mm_bias"), residual, false);
    Runs r = run_both(path, {random_floats({3, 6, 32}, 22, -1, 1, "x")});
    EXPECT_EQ(r.unfused_steps, residual ? 3 : 2);
    EXPECT_EQ(r.fused_steps, 1);
    EXPECT_TRUE(r.fused_ops.count("FusedMatMul"));
    EXPECT_LE(r.max_diff, 1e-5);
  }
}

TEST(TransformerFusion, MatMulWithAComputedBiasIsLeftAlone) {
  std::string path = projection_model(testing::temp_dir("mm_input_bias"), false, true);
  Runs r = run_both(
      path, {random_floats({2, 6, 32}, 23, -1, 1, "x"), random_floats({32}, 24, -1, 1, "b")});
  EXPECT_EQ(r.fused_steps, 2);
  EXPECT_FALSE(r.fused_ops.count("FusedMatMul"));
  EXPECT_LE(r.max_diff, 1e-5);
}

}  // namespace
}  // namespace tandem

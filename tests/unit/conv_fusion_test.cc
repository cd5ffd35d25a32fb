// The conv fusion passes (fuse_batchnorm_into_conv, fuse_conv_activation) on small models built
// here: each model runs fused (backend "auto") and as written (backend "ref", no fusion), the
// outputs must agree, and the fused graph must have the expected ops (so a pattern that stops
// matching fails the test).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "onnx/loader.h"
#include "onnx_builder.h"
#include "optimizer/passes.h"
#include "tandem/model.h"

namespace tandem {
namespace {

using testing::OnnxBuilder;

Tensor random_tensor(const Shape& s, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t(DataType::kFloat32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(gen);
  return t;
}

void add_float_attr(onnx::NodeProto& node, const std::string& name, float v) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

// The op histogram ("Conv", "com.tandem.FusedConv", ...) of the model's graph after the default
// and fusion passes, as Model::build_from_file runs them; "/nhwc" marks channels_last = 1.
std::map<std::string, int> fused_ops(const std::string& path) {
  std::unique_ptr<Graph> g = load_onnx_model(path);
  run_default_passes(*g);
  run_fusion_passes(*g);
  run_default_passes(*g);
  std::map<std::string, int> ops;
  for (auto& n : g->nodes())
    ops[(n->domain.empty() ? "" : n->domain + ".") + n->op_type +
        (n->attr_int_or("channels_last", 0) ? "/nhwc" : "")]++;
  return ops;
}

// Runs the model fused and on the reference backend; returns max |fused - ref| / (1 + max |ref|)
// over all outputs (which must have the same names and shapes).
double fused_vs_ref(const std::string& path, const std::vector<Tensor>& inputs) {
  Context ref_ctx;
  ref_ctx.backend = "ref";
  Context cpu_ctx;
  cpu_ctx.thread_num = 2;
  Model ref = Model::build_from_file(path, ref_ctx);
  Model cpu = Model::build_from_file(path, cpu_ctx);
  std::vector<Tensor> want = ref.predict(inputs);
  std::vector<Tensor> got = cpu.predict(inputs);
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t k = 0; k < std::min(got.size(), want.size()); ++k) {
    EXPECT_EQ(got[k].shape(), want[k].shape());
    EXPECT_EQ(got[k].name(), want[k].name());
    if (got[k].shape() != want[k].shape()) return INFINITY;
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < got[k].numel(); ++i) {
      diff = std::max(diff, double(std::abs(got[k].data<float>()[i] - want[k].data<float>()[i])));
      scale = std::max(scale, double(std::abs(want[k].data<float>()[i])));
    }
    worst = std::max(worst, diff / (1 + scale));
  }
  return worst;
}

// Conv(x, W, [B]) -> "c", with 3x3 pads 1 (or the given group / stride).
void add_conv(OnnxBuilder& b, const std::string& x, const std::string& out, int64_t cin,
              int64_t cout, uint32_t seed, bool bias, int64_t group = 1, int64_t stride = 1) {
  b.initializer(out + "_W", random_tensor({cout, cin / group, 3, 3}, seed));
  std::vector<std::string> ins{x, out + "_W"};
  if (bias) {
    b.initializer(out + "_B", random_tensor({cout}, seed + 1));
    ins.push_back(out + "_B");
  }
  auto& n = b.node("Conv", ins, {out});
  testing::add_ints_attr(n, "pads", {1, 1, 1, 1});
  testing::add_ints_attr(n, "kernel_shape", {3, 3});
  if (group != 1) testing::add_int_attr(n, "group", group);
  if (stride != 1) testing::add_ints_attr(n, "strides", {stride, stride});
}

// BatchNormalization(in) -> out with random statistics (variance in [0.5, 2]).
void add_bn(OnnxBuilder& b, const std::string& in, const std::string& out, int64_t c,
            uint32_t seed) {
  b.initializer(out + "_scale", random_tensor({c}, seed));
  b.initializer(out + "_bias", random_tensor({c}, seed + 1));
  b.initializer(out + "_mean", random_tensor({c}, seed + 2));
  b.initializer(out + "_var", random_tensor({c}, seed + 3, 0.5f, 2.0f));
  auto& n = b.node("BatchNormalization",
                   {in, out + "_scale", out + "_bias", out + "_mean", out + "_var"}, {out});
  add_float_attr(n, "epsilon", 1e-3f);
}

TEST(ConvFusion, BatchNormFoldsIntoConv) {
  for (bool bias : {false, true}) {
    for (int64_t group : {1, 4}) {
      SCOPED_TRACE(std::string(bias ? "bias" : "no bias") + " group " + std::to_string(group));
      OnnxBuilder b;
      b.input("x", DataType::kFloat32, {2, 8, 9, 7});
      b.output("y", DataType::kFloat32, {2, 12, 9, 7});
      add_conv(b, "x", "c", 8, 12, 1, bias, group);
      add_bn(b, "c", "y", 12, 10);
      const std::string path = b.save(testing::temp_dir("bn_fold"));
      std::map<std::string, int> ops = fused_ops(path);
      EXPECT_EQ(ops.count("BatchNormalization"), 0u);
      EXPECT_EQ(ops["Conv"], 1);
      EXPECT_LE(fused_vs_ref(path, {random_tensor({2, 8, 9, 7}, 3)}), 1e-5);
    }
  }
}

TEST(ConvFusion, BatchNormAndReluBecomeOneFusedConv) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {1, 3, 16, 16});
  b.output("y", DataType::kFloat32, {1, 8, 8, 8});
  add_conv(b, "x", "c", 3, 8, 1, false, 1, 2);
  add_bn(b, "c", "bn", 8, 20);
  b.node("Relu", {"bn"}, {"y"});
  const std::string path = b.save(testing::temp_dir("bn_relu"));
  std::map<std::string, int> ops = fused_ops(path);
  EXPECT_EQ(ops, (std::map<std::string, int>{{"com.tandem.FusedConv", 1}}));
  EXPECT_LE(fused_vs_ref(path, {random_tensor({1, 3, 16, 16}, 4)}), 1e-5);
}

// A BN whose statistics are model inputs is not folded; one whose conv output is also a graph
// output is not either.
TEST(ConvFusion, BatchNormNotFoldedWhenItCannotBe) {
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {1, 4, 6, 6});
    b.input("mean", DataType::kFloat32, {6});
    b.output("y", DataType::kFloat32, {1, 6, 6, 6});
    add_conv(b, "x", "c", 4, 6, 1, true);
    b.initializer("s", random_tensor({6}, 2));
    b.initializer("bb", random_tensor({6}, 3));
    b.initializer("v", random_tensor({6}, 4, 0.5f, 2.0f));
    b.node("BatchNormalization", {"c", "s", "bb", "mean", "v"}, {"y"});
    const std::string path = b.save(testing::temp_dir("bn_input_stats"));
    EXPECT_EQ(fused_ops(path)["BatchNormalization"], 1);
    EXPECT_LE(fused_vs_ref(path, {random_tensor({1, 4, 6, 6}, 5), random_tensor({6}, 6)}), 1e-5);
  }
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {1, 4, 6, 6});
    b.output("y", DataType::kFloat32, {1, 6, 6, 6});
    b.output("c", DataType::kFloat32, {1, 6, 6, 6});
    add_conv(b, "x", "c", 4, 6, 1, true);
    add_bn(b, "c", "y", 6, 7);
    const std::string path = b.save(testing::temp_dir("bn_conv_output"));
    EXPECT_EQ(fused_ops(path)["BatchNormalization"], 1);
    EXPECT_LE(fused_vs_ref(path, {random_tensor({1, 4, 6, 6}, 5)}), 1e-5);
  }
}

// Each activation as torch exports it, after a conv (with and without a residual Add).
struct ActivationPattern {
  std::string name;
  int opset;
  // Adds the activation nodes reading `in` and writing `out`.
  void (*build)(OnnxBuilder& b, const std::string& in, const std::string& out);
};

Tensor scalar(float v) {
  Tensor t(DataType::kFloat32, Shape{});
  t.data<float>()[0] = v;
  return t;
}

const std::vector<ActivationPattern>& activation_patterns() {
  static const std::vector<ActivationPattern> patterns = {
      {"Relu", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         b.node("Relu", {in}, {out});
       }},
      {"LeakyRelu", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         add_float_attr(b.node("LeakyRelu", {in}, {out}), "alpha", 0.1f);
       }},
      {"ReLU6 (Clip with constant inputs)", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         b.initializer("lo", scalar(0.0f));
         b.initializer("hi", scalar(0.5f));  // small, so the inputs reach it
         b.node("Clip", {in, "lo", "hi"}, {out});
       }},
      {"Clip max only", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         b.initializer("hi", scalar(0.25f));
         b.node("Clip", {in, "", "hi"}, {out});
       }},
      {"Clip opset 6 attributes", 6,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         auto& n = b.node("Clip", {in}, {out});
         add_float_attr(n, "min", -0.3f);
         add_float_attr(n, "max", 0.4f);
       }},
      {"Sigmoid", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         b.node("Sigmoid", {in}, {out});
       }},
      {"Tanh", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         b.node("Tanh", {in}, {out});
       }},
      {"HardSigmoid", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         auto& n = b.node("HardSigmoid", {in}, {out});
         add_float_attr(n, "alpha", 0.3f);
         add_float_attr(n, "beta", 0.4f);
       }},
      {"HardSwish", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         b.node("HardSwish", {in}, {out});
       }},
      {"HardSwish as x * HardSigmoid(x)", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         auto& n = b.node("HardSigmoid", {in}, {in + "_gate"});
         add_float_attr(n, "alpha", 1.0f / 6.0f);
         add_float_attr(n, "beta", 0.5f);
         b.node("Mul", {in, in + "_gate"}, {out});
       }},
      {"SiLU as x * Sigmoid(x)", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         b.node("Sigmoid", {in}, {in + "_gate"});
         b.node("Mul", {in, in + "_gate"}, {out});
       }},
      {"SiLU as Sigmoid(x) * x", 17,
       [](OnnxBuilder& b, const std::string& in, const std::string& out) {
         b.node("Sigmoid", {in}, {in + "_gate"});
         b.node("Mul", {in + "_gate", in}, {out});
       }},
  };
  return patterns;
}

TEST(ConvFusion, ConvActivation) {
  for (const ActivationPattern& p : activation_patterns()) {
    for (bool residual : {false, true}) {
      SCOPED_TRACE(p.name + (residual ? " with residual" : ""));
      OnnxBuilder b(p.opset);
      b.input("x", DataType::kFloat32, {2, 6, 7, 9});
      b.output("y", DataType::kFloat32, {2, 6, 7, 9});
      add_conv(b, "x", "c", 6, 6, 11, true);
      std::string act_in = "c";
      if (residual) {
        b.node("Add", {"x", "c"}, {"sum"});  // the conv output second
        act_in = "sum";
      }
      p.build(b, act_in, "y");
      const std::string path = b.save(testing::temp_dir("conv_act"));
      EXPECT_EQ(fused_ops(path), (std::map<std::string, int>{{"com.tandem.FusedConv", 1}}));
      EXPECT_LE(fused_vs_ref(path, {random_tensor({2, 6, 7, 9}, 12, -2.0f, 2.0f)}), 1e-5);
    }
  }
}

// Two convs summed: the first conv's Add reads the second conv's output, computed after it, so
// the fused node must run after both. Then a depthwise conv with a residual Add and no
// activation.
TEST(ConvFusion, ResidualComputedAfterTheConv) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {1, 8, 10, 10});
  b.output("y", DataType::kFloat32, {1, 8, 10, 10});
  add_conv(b, "x", "a", 8, 8, 1, true);
  add_conv(b, "x", "d", 8, 8, 3, false, 8);
  b.node("Add", {"a", "d"}, {"s"});
  b.node("Relu", {"s"}, {"r"});
  add_conv(b, "r", "e", 8, 8, 5, true, 8);
  b.node("Add", {"e", "r"}, {"y"});
  const std::string path = b.save(testing::temp_dir("residual_order"));
  // The three convs make one channels-last region: x in, y out.
  EXPECT_EQ(fused_ops(path), (std::map<std::string, int>{{"com.tandem.FusedConv/nhwc", 3},
                                                         {"com.tandem.ToChannelsLast", 1},
                                                         {"com.tandem.ToChannelsFirst", 1}}));
  EXPECT_LE(fused_vs_ref(path, {random_tensor({1, 8, 10, 10}, 7)}), 1e-5);
}

// The Add's other operand broadcasts: [1, C, 1, 1] (the conv output keeps its shape) and
// [2, C, H, W] against a batch-1 conv (the sum is larger than the conv output). Both fuse; the
// CPU kernel hands them to the reference kernel.
TEST(ConvFusion, ResidualThatBroadcasts) {
  for (bool larger : {false, true}) {
    SCOPED_TRACE(larger ? "Z larger than the conv output" : "Z per channel");
    OnnxBuilder b;
    const Shape zs = larger ? Shape{2, 4, 5, 5} : Shape{1, 4, 1, 1};
    b.input("x", DataType::kFloat32, {1, 3, 5, 5});
    b.input("z", DataType::kFloat32, zs);
    b.output("y", DataType::kFloat32, {larger ? 2 : 1, 4, 5, 5});
    add_conv(b, "x", "c", 3, 4, 1, true);
    b.node("Add", {"c", "z"}, {"s"});
    b.node("Relu", {"s"}, {"y"});
    const std::string path = b.save(testing::temp_dir("residual_broadcast"));
    EXPECT_EQ(fused_ops(path), (std::map<std::string, int>{{"com.tandem.FusedConv", 1}}));
    EXPECT_LE(fused_vs_ref(path, {random_tensor({1, 3, 5, 5}, 8), random_tensor(zs, 9)}), 1e-5);
  }
}

// What must not fuse: a conv output that is also a graph output, one read by two nodes, an
// activation output read twice through an Add(c, c), and Clip bounds computed at run time.
TEST(ConvFusion, NotFused) {
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {1, 3, 6, 6});
    b.output("y", DataType::kFloat32, {1, 4, 6, 6});
    b.output("c", DataType::kFloat32, {1, 4, 6, 6});
    add_conv(b, "x", "c", 3, 4, 1, true);
    b.node("Relu", {"c"}, {"y"});
    const std::string path = b.save(testing::temp_dir("nf_output"));
    EXPECT_EQ(fused_ops(path), (std::map<std::string, int>{{"Conv", 1}, {"Relu", 1}}));
  }
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {1, 3, 6, 6});
    b.output("y", DataType::kFloat32, {1, 4, 6, 6});
    add_conv(b, "x", "c", 3, 4, 1, true);
    b.node("Relu", {"c"}, {"r"});
    b.node("Sigmoid", {"c"}, {"s"});
    b.node("Add", {"r", "s"}, {"y"});
    const std::string path = b.save(testing::temp_dir("nf_two_readers"));
    std::map<std::string, int> ops = fused_ops(path);
    EXPECT_EQ(ops["Conv"], 1);
    EXPECT_EQ(ops.count("com.tandem.FusedConv"), 0u);
    EXPECT_LE(fused_vs_ref(path, {random_tensor({1, 3, 6, 6}, 1)}), 1e-5);
  }
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {1, 3, 6, 6});
    b.output("y", DataType::kFloat32, {1, 4, 6, 6});
    add_conv(b, "x", "c", 3, 4, 1, true);
    b.node("Add", {"c", "c"}, {"y"});
    const std::string path = b.save(testing::temp_dir("nf_add_self"));
    EXPECT_EQ(fused_ops(path), (std::map<std::string, int>{{"Add", 1}, {"Conv", 1}}));
  }
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {1, 3, 6, 6});
    b.input("hi", DataType::kFloat32, {});
    b.output("y", DataType::kFloat32, {1, 4, 6, 6});
    add_conv(b, "x", "c", 3, 4, 1, true);
    b.node("Clip", {"c", "", "hi"}, {"y"});
    const std::string path = b.save(testing::temp_dir("nf_clip_input"));
    EXPECT_EQ(fused_ops(path), (std::map<std::string, int>{{"Clip", 1}, {"Conv", 1}}));
  }
}

// ---- Channels-last regions ---------------------------------------------------------------------

// A small ResNet: stem conv + BN + Relu, MaxPool, a basic block with its residual, global average
// pool, Flatten. Everything up to the pool runs NHWC: one layout change in, one out (before
// Flatten).
TEST(ChannelsLast, ResNetBlock) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2, 3, 32, 30});
  b.output("y", DataType::kFloat32, {2, 8});
  add_conv(b, "x", "c1", 3, 8, 1, false, 1, 2);
  add_bn(b, "c1", "bn1", 8, 10);
  b.node("Relu", {"bn1"}, {"r1"});
  auto& pool = b.node("MaxPool", {"r1"}, {"p"});
  testing::add_ints_attr(pool, "kernel_shape", {3, 3});
  testing::add_ints_attr(pool, "strides", {2, 2});
  testing::add_ints_attr(pool, "pads", {1, 1, 1, 1});
  add_conv(b, "p", "c2", 8, 8, 20, false);
  add_bn(b, "c2", "bn2", 8, 30);
  b.node("Relu", {"bn2"}, {"r2"});
  add_conv(b, "r2", "c3", 8, 8, 40, false);
  add_bn(b, "c3", "bn3", 8, 50);
  b.node("Add", {"bn3", "p"}, {"s"});
  b.node("Relu", {"s"}, {"r3"});
  b.node("GlobalAveragePool", {"r3"}, {"g"});
  b.node("Flatten", {"g"}, {"y"});
  const std::string path = b.save(testing::temp_dir("cl_resnet"));
  EXPECT_EQ(fused_ops(path), (std::map<std::string, int>{{"com.tandem.FusedConv/nhwc", 3},
                                                         {"com.tandem.MaxPool/nhwc", 1},
                                                         {"com.tandem.GlobalAveragePool/nhwc", 1},
                                                         {"com.tandem.ToChannelsLast", 1},
                                                         {"com.tandem.ToChannelsFirst", 1},
                                                         {"Flatten", 1}}));
  EXPECT_LE(fused_vs_ref(path, {random_tensor({2, 3, 32, 30}, 1, -2.0f, 2.0f)}), 1e-5);
}

// A squeeze-and-excite block (the gate broadcasts over H and W), binary ops with constants of
// ranks 0, 1 and 3, an unfusable HardSwish and Clip, and an output read both inside the region
// and as a graph output.
TEST(ChannelsLast, SqueezeExciteAndConstants) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {1, 8, 10, 9});
  b.output("y", DataType::kFloat32, {1, 8, 10, 9});
  b.output("f", DataType::kFloat32, {1, 16, 10, 9});
  add_conv(b, "x", "c1", 8, 16, 1, true);
  b.node("HardSwish", {"c1"}, {"f"});  // a graph output, and read below
  b.node("GlobalAveragePool", {"f"}, {"g"});
  b.initializer("sq_W", random_tensor({4, 16, 1, 1}, 2));
  b.node("Conv", {"g", "sq_W"}, {"sq"});
  b.node("Relu", {"sq"}, {"sqr"});
  b.initializer("ex_W", random_tensor({16, 4, 1, 1}, 3));
  b.node("Conv", {"sqr", "ex_W"}, {"ex"});
  auto& hs = b.node("HardSigmoid", {"ex"}, {"gate"});
  add_float_attr(hs, "alpha", 0.2f);
  b.node("Mul", {"f", "gate"}, {"m"});
  b.initializer("per_channel", random_tensor({16, 1, 1}, 4));
  b.node("Mul", {"m", "per_channel"}, {"m2"});
  b.initializer("per_column", random_tensor({9}, 5));
  b.node("Add", {"m2", "per_column"}, {"m3"});
  b.initializer("half", Tensor::from_vector(DataType::kFloat32, {}, std::vector<float>{0.5f}));
  b.node("Sub", {"half", "m3"}, {"m4"});  // the constant first
  b.initializer("lo", Tensor::from_vector(DataType::kFloat32, {}, std::vector<float>{-0.5f}));
  b.node("Clip", {"m4", "lo"}, {"m5"});
  b.node("Mul", {"m5", "m5"}, {"m6"});  // Clip read twice: not fused into a conv
  add_conv(b, "m6", "y", 16, 8, 6, true);
  const std::string path = b.save(testing::temp_dir("cl_se"));
  std::map<std::string, int> ops = fused_ops(path);
  EXPECT_EQ(ops["com.tandem.FusedConv/nhwc"], 4);
  EXPECT_EQ(ops["com.tandem.ToChannelsLast"], 1);
  EXPECT_EQ(ops["com.tandem.ToChannelsFirst"], 2);  // y and f
  EXPECT_EQ(ops.count("com.tandem.FusedConv"), 0u);
  EXPECT_LE(fused_vs_ref(path, {random_tensor({1, 8, 10, 9}, 7, -3.0f, 3.0f)}), 1e-5);
}

// SqueezeNet's Fire module: a squeeze conv feeding two expand convs whose outputs are concatenated
// on channels, then read by the next conv. The Concat joins the region (its axis renumbered, here
// written as -3) instead of ending it; a Concat that also takes the graph input brings that in
// through one ToChannelsLast.
TEST(ChannelsLast, ConcatOfConvsStaysInTheRegion) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2, 4, 12, 10});
  b.output("y", DataType::kFloat32, {2, 4, 12, 10});
  add_conv(b, "x", "sq", 4, 6, 1, true);
  b.node("Relu", {"sq"}, {"sqr"});
  add_conv(b, "sqr", "e1", 6, 5, 10, true);
  b.node("Relu", {"e1"}, {"e1r"});
  add_conv(b, "sqr", "e3", 6, 7, 20, true);
  b.node("Relu", {"e3"}, {"e3r"});
  auto& cat = b.node("Concat", {"e1r", "e3r"}, {"cat"});
  testing::add_int_attr(cat, "axis", -3);
  add_conv(b, "cat", "c2", 12, 4, 30, true);
  auto& cat2 = b.node("Concat", {"c2", "x"}, {"cat2"});  // x is NCHW: brought in
  testing::add_int_attr(cat2, "axis", 1);
  add_conv(b, "cat2", "y", 8, 4, 40, false);
  const std::string path = b.save(testing::temp_dir("cl_concat"));
  EXPECT_EQ(fused_ops(path), (std::map<std::string, int>{{"com.tandem.FusedConv/nhwc", 5},
                                                         {"Concat", 2},
                                                         {"com.tandem.ToChannelsLast", 1},
                                                         {"com.tandem.ToChannelsFirst", 1}}));
  EXPECT_LE(fused_vs_ref(path, {random_tensor({2, 4, 12, 10}, 1, -2.0f, 2.0f)}), 1e-5);
}

// DenseNet's blocks: the concatenated features go through a BatchNormalization that cannot be
// folded into a conv (its input has other readers), then Relu and a conv; the transition is
// torch's AvgPool2d export, a Pad of zeros and an AveragePool. The BatchNormalizations run
// channels-last inside the region, and the zero Pad is dropped. Large enough (38400 values per
// BatchNormalization) for the CPU kernel to split the pixels over threads.
TEST(ChannelsLast, DenseBlockWithBatchNorm) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2, 3, 40, 40});
  b.output("y", DataType::kFloat32, {2, 4, 20, 20});
  add_conv(b, "x", "c0", 3, 8, 1, false);
  add_bn(b, "c0", "bn1", 8, 10);
  b.node("Relu", {"bn1"}, {"r1"});
  add_conv(b, "r1", "c1", 8, 4, 20, false);
  auto& cat = b.node("Concat", {"c0", "c1"}, {"cat"});
  testing::add_int_attr(cat, "axis", 1);
  add_bn(b, "cat", "bn2", 12, 30);
  b.node("Relu", {"bn2"}, {"r2"});
  add_conv(b, "r2", "c2", 12, 4, 40, false);
  b.initializer("zero_pads",
                Tensor::from_vector(DataType::kInt64, {8}, std::vector<int64_t>(8, 0)));
  b.node("Pad", {"c2", "zero_pads"}, {"padded"});
  auto& pool = b.node("AveragePool", {"padded"}, {"y"});
  testing::add_ints_attr(pool, "kernel_shape", {2, 2});
  testing::add_ints_attr(pool, "strides", {2, 2});
  const std::string path = b.save(testing::temp_dir("cl_dense"));
  // Both Relus go into their BNs, and the Concat, read by bn2 alone, becomes bn2's X in parts.
  EXPECT_EQ(fused_ops(path), (std::map<std::string, int>{{"com.tandem.FusedConv/nhwc", 3},
                                                         {"com.tandem.BatchNormalization/nhwc", 2},
                                                         {"com.tandem.AveragePool/nhwc", 1},
                                                         {"com.tandem.ToChannelsLast", 1},
                                                         {"com.tandem.ToChannelsFirst", 1}}));
  EXPECT_LE(fused_vs_ref(path, {random_tensor({2, 3, 40, 40}, 2, -2.0f, 2.0f)}), 1e-5);
}

// The BN's fused activation and X in parts where the pattern allows it, and not where it does
// not: a three-part concat of odd channel counts (vector tails in every part) read by the BN
// alone is folded, with a LeakyRelu (vector loop); a concat also read by a conv stays, its BN
// taking a Sigmoid (applied after the vector loop); a BN whose output is also a graph output
// keeps its Relu apart.
TEST(ChannelsLast, BatchNormTakesActivationAndConcatParts) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2, 3, 9, 7});
  b.output("y", DataType::kFloat32, {2, 4, 9, 7});
  b.output("bn3", DataType::kFloat32, {2, 4, 9, 7});
  add_conv(b, "x", "c0", 3, 5, 1, true);
  add_conv(b, "c0", "c1", 5, 3, 10, true);
  add_conv(b, "c1", "c2", 3, 19, 20, true);
  auto& cat = b.node("Concat", {"c0", "c1", "c2"}, {"cat"});
  testing::add_int_attr(cat, "axis", 1);
  add_bn(b, "cat", "bn1", 27, 30);
  add_float_attr(b.node("LeakyRelu", {"bn1"}, {"r1"}), "alpha", 0.1f);
  add_conv(b, "r1", "c3", 27, 6, 40, true);
  auto& cat2 = b.node("Concat", {"c3", "c2"}, {"cat2"});
  testing::add_int_attr(cat2, "axis", 1);
  add_bn(b, "cat2", "bn2", 25, 50);
  b.node("Sigmoid", {"bn2"}, {"s2"});
  add_conv(b, "cat2", "c4", 25, 4, 60, true);
  add_conv(b, "s2", "s2_conv", 25, 4, 70, true);
  b.node("Add", {"s2_conv", "c4"}, {"sum"});
  add_bn(b, "sum", "bn3", 4, 80);
  b.node("Relu", {"bn3"}, {"y"});
  const std::string path = b.save(testing::temp_dir("cl_bn_parts"));
  EXPECT_EQ(fused_ops(path), (std::map<std::string, int>{{"com.tandem.FusedConv/nhwc", 6},
                                                         {"com.tandem.BatchNormalization/nhwc", 3},
                                                         {"Concat", 1},
                                                         {"Relu", 1},
                                                         {"com.tandem.ToChannelsLast", 1},
                                                         {"com.tandem.ToChannelsFirst", 2}}));
  EXPECT_LE(fused_vs_ref(path, {random_tensor({2, 3, 9, 7}, 2, -2.0f, 2.0f)}), 1e-5);
}

// ConvNeXt's block: a depthwise conv, a permute to NHWC for LayerNorm and the linears, a permute
// back, a per-channel layer scale and the residual add. The permutes are free borders (they become
// Identity and go), so stem, block and head convs are one region with one layout change in (the
// graph input) and one out (the graph output).
TEST(ChannelsLast, ModelWrittenPermutesAreFreeBorders) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {2, 3, 9, 8});
  b.output("y", DataType::kFloat32, {2, 4, 9, 8});
  add_conv(b, "x", "stem", 3, 8, 1, true);
  auto permute = [&](const std::string& in, const std::string& out, std::vector<int64_t> perm) {
    testing::add_ints_attr(b.node("Transpose", {in}, {out}), "perm", perm);
  };
  auto layer_norm = [&](const std::string& in, const std::string& out, uint32_t seed) {
    b.initializer(out + "_g", random_tensor({8}, seed));
    b.initializer(out + "_b", random_tensor({8}, seed + 1));
    testing::add_int_attr(b.node("LayerNormalization", {in, out + "_g", out + "_b"}, {out}), "axis",
                          -1);
  };
  permute("stem", "s_nhwc", {0, 2, 3, 1});
  layer_norm("s_nhwc", "s_ln", 10);
  permute("s_ln", "s", {0, 3, 1, 2});
  add_conv(b, "s", "dw", 8, 8, 20, true, 8);
  permute("dw", "dw_nhwc", {0, 2, 3, 1});
  layer_norm("dw_nhwc", "ln", 30);
  b.initializer("w1", random_tensor({8, 16}, 40));
  b.node("MatMul", {"ln", "w1"}, {"h"});
  b.node("Relu", {"h"}, {"hr"});
  b.initializer("w2", random_tensor({16, 8}, 50));
  b.node("MatMul", {"hr", "w2"}, {"o"});
  permute("o", "o_nchw", {0, 3, 1, 2});
  b.initializer("scale", random_tensor({8, 1, 1}, 60));
  b.node("Mul", {"scale", "o_nchw"}, {"scaled"});
  b.node("Add", {"scaled", "s"}, {"res"});
  add_conv(b, "res", "y", 8, 4, 70, true);
  const std::string path = b.save(testing::temp_dir("cl_permutes"));
  std::map<std::string, int> ops = fused_ops(path);
  EXPECT_EQ(ops["com.tandem.FusedConv/nhwc"], 3);
  EXPECT_EQ(ops["com.tandem.ToChannelsLast"], 1);
  EXPECT_EQ(ops["com.tandem.ToChannelsFirst"], 1);
  EXPECT_EQ(ops.count("Transpose"), 0u);
  EXPECT_EQ(ops.count("Identity"), 0u);
  EXPECT_LE(fused_vs_ref(path, {random_tensor({2, 3, 9, 8}, 2, -2.0f, 2.0f)}), 1e-5);
}

// A conv alone between ops that need NCHW gains nothing from NHWC: it stays as it is.
TEST(ChannelsLast, LoneConvStaysNchw) {
  OnnxBuilder b;
  b.input("x", DataType::kFloat32, {1, 4, 6, 6});
  b.output("y", DataType::kFloat32, {1, 4, 6, 6});
  add_conv(b, "x", "c", 4, 4, 1, true);
  b.initializer("s", random_tensor({4}, 2));
  b.initializer("t", random_tensor({4}, 3));
  b.node("InstanceNormalization", {"c", "s", "t"}, {"y"});
  const std::string path = b.save(testing::temp_dir("cl_lone"));
  EXPECT_EQ(fused_ops(path),
            (std::map<std::string, int>{{"Conv", 1}, {"InstanceNormalization", 1}}));
}

// Convs the region cannot take: a W computed at run time, a 1-D conv. Two of each in a chain
// (which would otherwise be worth converting) stay NCHW.
TEST(ChannelsLast, ConvsItCannotTake) {
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {1, 4, 6, 6});
    b.input("w", DataType::kFloat32, {4, 4, 3, 3});
    b.output("y", DataType::kFloat32, {1, 4, 2, 2});
    b.node("Conv", {"x", "w"}, {"a"});
    b.node("Relu", {"a"}, {"r"});
    b.node("Conv", {"r", "w"}, {"y"});
    const std::string path = b.save(testing::temp_dir("cl_w_input"));
    EXPECT_EQ(fused_ops(path),
              (std::map<std::string, int>{{"com.tandem.FusedConv", 1}, {"Conv", 1}}));
    EXPECT_LE(fused_vs_ref(path, {random_tensor({1, 4, 6, 6}, 1), random_tensor({4, 4, 3, 3}, 2)}),
              1e-5);
  }
  {
    OnnxBuilder b;
    b.input("x", DataType::kFloat32, {2, 4, 9});
    b.output("y", DataType::kFloat32, {2, 4, 5});
    b.initializer("w", random_tensor({4, 4, 3}, 3));
    b.node("Conv", {"x", "w"}, {"a"});
    b.node("Relu", {"a"}, {"r"});
    b.node("Conv", {"r", "w"}, {"y"});
    const std::string path = b.save(testing::temp_dir("cl_1d"));
    EXPECT_EQ(fused_ops(path),
              (std::map<std::string, int>{{"com.tandem.FusedConv", 1}, {"Conv", 1}}));
    EXPECT_LE(fused_vs_ref(path, {random_tensor({2, 4, 9}, 4)}), 1e-5);
  }
}

}  // namespace
}  // namespace tandem

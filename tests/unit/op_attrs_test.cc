// The typed attribute structs (ops/<family>.h): each family's rules, defaults and checks, and that
// a kernel gets them when it is created, so a bad attribute fails at plan time naming the node
// rather than on the first call.
#include <gtest/gtest.h>

#include <string>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/ref/ref_backend.h"
#include "core/error.h"
#include "ops/activation.h"
#include "ops/matmul.h"
#include "ops/normalization.h"
#include "ops/pool.h"
#include "ops/recurrent.h"
#include "ops/shape_utils.h"
#include "ops/softmax.h"
#include "ops/tensor.h"

namespace tandem {
namespace {

Node make_node(const std::string& op_type, int opset) {
  Node n;
  n.name = "n1";
  n.op_type = op_type;
  n.opset = opset;
  return n;
}

void set_int(Node& n, const std::string& key, int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  n.attrs[key] = a;
}

void set_ints(Node& n, const std::string& key, std::vector<int64_t> v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(v);
  n.attrs[key] = a;
}

void set_string(Node& n, const std::string& key, std::string v) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = std::move(v);
  n.attrs[key] = a;
}

// The message of the tandem::Error `fn` throws ("" when it throws none).
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(OpAttrs, SoftmaxAxisRuleChangedAtOpset13) {
  const Shape x{2, 3, 4};
  // Opset 13: one axis, default -1.
  Node n13 = make_node("Softmax", 13);
  SoftmaxRows r = SoftmaxAttrs::parse(n13).rows(x, n13);
  EXPECT_EQ(r.outer, 6);
  EXPECT_EQ(r.n, 4);
  EXPECT_EQ(r.inner, 1);
  set_int(n13, "axis", 1);
  r = SoftmaxAttrs::parse(n13).rows(x, n13);
  EXPECT_EQ(r.outer, 2);
  EXPECT_EQ(r.n, 3);
  EXPECT_EQ(r.inner, 4);
  // Opset 11: coerced to 2-D at the axis, default 1.
  Node n11 = make_node("Softmax", 11);
  r = SoftmaxAttrs::parse(n11).rows(x, n11);
  EXPECT_EQ(r.outer, 2);
  EXPECT_EQ(r.n, 12);
  EXPECT_EQ(r.inner, 1);
  set_int(n11, "axis", 5);
  const std::string msg = error_of([&] { SoftmaxAttrs::parse(n11).rows(x, n11); });
  EXPECT_NE(msg.find("n1"), std::string::npos) << msg;
}

TEST(OpAttrs, GemmDimsAndTransposes) {
  Node n = make_node("Gemm", 13);
  set_int(n, "transA", 1);
  const GemmAttrs g = GemmAttrs::parse(n);
  EXPECT_TRUE(g.trans_a);
  EXPECT_FALSE(g.trans_b);
  EXPECT_EQ(g.alpha, 1.0f);
  const GemmDims d = g.dims({5, 3}, {5, 7}, n);
  EXPECT_EQ(d.m, 3);
  EXPECT_EQ(d.k, 5);
  EXPECT_EQ(d.n, 7);
  const std::string msg = error_of([&] { g.dims({5, 3}, {4, 7}, n); });
  EXPECT_NE(msg.find("inner dimensions do not match"), std::string::npos) << msg;
}

TEST(OpAttrs, PoolGeometry) {
  Node n = make_node("MaxPool", 12);
  set_ints(n, "kernel_shape", {3, 3});
  set_ints(n, "strides", {2, 2});
  set_string(n, "auto_pad", "SAME_UPPER");
  const PoolAttrs a = PoolAttrs::parse(n);
  EXPECT_EQ(a.output_shape({1, 1, 5, 6}, n), (Shape{1, 1, 3, 3}));
  // SAME_UPPER: total padding (3 - 1) * 2 + 3 - 6 = 1 on the width, the larger half at the end.
  const PoolAxis w = a.axis(1, 2, 6, 3);
  EXPECT_EQ(w.pad_begin, 0);
  EXPECT_EQ(w.pad_end, 1);
  // Explicit pads with ceil_mode: the last window may start in the input, not in the padding.
  Node c = make_node("AveragePool", 12);
  set_ints(c, "kernel_shape", {2});
  set_ints(c, "strides", {2});
  set_int(c, "ceil_mode", 1);
  EXPECT_EQ(PoolAttrs::parse(c).output_shape({1, 1, 5}, c), (Shape{1, 1, 3}));
  // Attributes that do not fit the input's rank name the node.
  const std::string msg = error_of([&] { PoolAttrs::parse(c).output_shape({1, 1, 5, 5}, c); });
  EXPECT_NE(msg.find("n1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("kernel_shape"), std::string::npos) << msg;
}

TEST(OpAttrs, NormalizationChecksTheFieldsOfItsOp) {
  Node ln = make_node("LayerNormalization", 17);
  set_int(ln, "stash_type", 7);
  EXPECT_NE(error_of([&] { NormAttrs::parse(ln); }).find("stash_type 7"), std::string::npos);
  Node gn = make_node("GroupNormalization", 18);
  EXPECT_NE(error_of([&] { NormAttrs::parse(gn); }).find("num_groups"), std::string::npos);
  // Another op of the family does not need num_groups.
  EXPECT_EQ(error_of([&] { NormAttrs::parse(make_node("InstanceNormalization", 6)); }), "");
  Node bn = make_node("BatchNormalization", 15);
  set_int(bn, "training_mode", 1);
  const NormAttrs b = NormAttrs::parse(bn);
  EXPECT_TRUE(b.training);
  EXPECT_FLOAT_EQ(b.momentum, 0.9f);
}

TEST(OpAttrs, AttentionPermutationsAreChecked) {
  Node n = make_node("Attention", 1);
  set_ints(n, "q_perm", {0, 2, 1, 3});
  const AttentionAttrs a = AttentionAttrs::parse(n);
  EXPECT_EQ(permuted({1, 2, 3, 4}, a.q_perm, n, "q_perm"), (Shape{1, 3, 2, 4}));
  const std::string msg = error_of([&] { permuted({1, 2, 3}, a.q_perm, n, "q_perm"); });
  EXPECT_NE(msg.find("q_perm"), std::string::npos) << msg;
}

TEST(OpAttrs, TransposeDefaultsToReversedAxes) {
  Node n = make_node("Transpose", 13);
  EXPECT_EQ(TransposeAttrs::parse(n).perm_for(3, n), (std::vector<int64_t>{2, 1, 0}));
  set_ints(n, "perm", {0, 2, 1});
  EXPECT_EQ(TransposeAttrs::parse(n).perm_for(3, n), (std::vector<int64_t>{0, 2, 1}));
  set_ints(n, "perm", {0, 0, 1});
  const std::string msg = error_of([&] { TransposeAttrs::parse(n).perm_for(3, n); });
  EXPECT_NE(msg.find("not a permutation"), std::string::npos) << msg;
  // Concat's axis is required.
  EXPECT_NE(error_of([&] { ConcatAttrs::parse(make_node("Concat", 13)); }).find("axis"),
            std::string::npos);
}

TEST(OpAttrs, ActivationDefaultsPerOp) {
  EXPECT_FLOAT_EQ(ActivationAttrs::parse(make_node("LeakyRelu", 16)).alpha, 0.01f);
  EXPECT_FLOAT_EQ(ActivationAttrs::parse(make_node("Elu", 6)).alpha, 1.0f);
  const ActivationAttrs hs = ActivationAttrs::parse(make_node("HardSigmoid", 6));
  EXPECT_FLOAT_EQ(hs.alpha, 0.2f);
  EXPECT_FLOAT_EQ(hs.beta, 0.5f);
  Node g = make_node("Gelu", 20);
  set_string(g, "approximate", "tanh");
  EXPECT_TRUE(ActivationAttrs::parse(g).tanh_approximation);
  set_string(g, "approximate", "cubic");
  EXPECT_NE(error_of([&] { ActivationAttrs::parse(g); }).find("cubic"), std::string::npos);
}

TEST(OpAttrs, RecurrentDirectionAndActivations) {
  Node n = make_node("GRU", 14);
  set_string(n, "direction", "bidirectional");
  const RecurrentAttrs a = RecurrentAttrs::parse(n);
  EXPECT_EQ(a.dirs, 2);
  EXPECT_FALSE(a.reverse_only);
  ASSERT_EQ(a.activations.size(), 4u);  // f, g per direction
  EXPECT_EQ(a.activations[0].name, "sigmoid");
  EXPECT_EQ(a.activations[1].name, "tanh");
  set_string(n, "direction", "sideways");
  EXPECT_NE(error_of([&] { RecurrentAttrs::parse(n); }).find("sideways"), std::string::npos);
}

// A stateless reference kernel registered with its family's struct parses it when it is created:
// LpPool's p = 0 fails there, before any call.
TEST(OpAttrs, KernelsParseWhenCreated) {
  Node n = make_node("LpPool", 18);
  set_ints(n, "kernel_shape", {2});
  set_int(n, "p", 0);
  for (const Backend* b : {&reference_backend(), &cpu_backend()}) {
    const KernelFactory* f = b->kernels().find("", "LpPool");
    if (!f) continue;  // the CPU backend leaves LpPool to the reference backend
    const std::string msg = error_of([&] { (*f)(n); });
    EXPECT_NE(msg.find("p must be >= 1"), std::string::npos) << b->name() << ": " << msg;
  }
  Node ok = make_node("LpPool", 18);
  set_ints(ok, "kernel_shape", {2});
  EXPECT_NE((*reference_backend().kernels().find("", "LpPool"))(ok), nullptr);
}

}  // namespace
}  // namespace tandem

// GroupNorm fusion: torch exports nn.GroupNorm as
//   r = Reshape(x, [0, G, -1]);  n = InstanceNormalization(r, ones, zeros)
//   y = Reshape(n, Shape(x)) [* gamma] [+ beta]
// often followed by SiLU, y * Sigmoid(y). All of it becomes one GroupNorm (com.tandem) node:
// GroupNorm(x, gamma, beta), num_groups G, InstanceNormalization's epsilon, activation "SiLU"
// when the SiLU was there. gamma and beta must be constants (torch's [C, 1, 1] parameters), so a
// residual Add after the norm is not mistaken for its bias.
#include <vector>

#include "optimizer/passes.h"
#include "optimizer/pattern_util.h"
#include "ops/schema.h"

namespace tandem {

namespace {

using pattern::is_op;
using pattern::only_consumer;
using pattern::other_input;
using pattern::single_use;

// The G of a constant int64 [0, G, -1], else 0.
int64_t groups_of(const Value* shape) {
  if (!shape || !shape->is_constant()) return 0;
  const Tensor& t = *shape->constant;
  if (t.dtype() != DataType::kInt64 || t.shape() != Shape{3}) return 0;
  const int64_t* d = t.data<int64_t>();
  return d[0] == 0 && d[1] >= 1 && d[2] == -1 ? d[1] : 0;
}

Attribute string_attr(const std::string& s) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = s;
  return a;
}

// Tries the pattern around InstanceNormalization `in`; returns whether it fused.
bool try_fuse(Graph& graph, Node* in) {
  if (!is_op(in, "InstanceNormalization", 3)) return false;
  if (!pattern::all_equal(in->inputs[1], 1.0f) || !pattern::all_equal(in->inputs[2], 0.0f))
    return false;
  Node* r1 = pattern::producer(in->inputs[0], "Reshape");
  if (!is_op(r1, "Reshape", 2) || !single_use(in->inputs[0]) ||
      r1->attr_int_or("allowzero", 0) != 0)
    return false;
  const int64_t groups = groups_of(r1->inputs[1]);
  Value* x = r1->inputs[0];
  if (groups == 0) return false;
  // Back to x's shape.
  Node* r2 = only_consumer(in->outputs[0]);
  if (!is_op(r2, "Reshape", 2) || r2->inputs[0] != in->outputs[0] ||
      r2->attr_int_or("allowzero", 0) != 0)
    return false;
  Node* shape = pattern::producer(r2->inputs[1], "Shape");
  if (!is_op(shape, "Shape", 1) || shape->inputs[0] != x || shape->has_attr("start") ||
      shape->has_attr("end"))
    return false;
  std::vector<Node*> nodes{r1, in, r2};
  if (single_use(r2->inputs[1])) nodes.push_back(shape);
  Value* y = r2->outputs[0];
  // A constant operand of the `op` that alone consumes y (Mul: gamma, then Add: beta) joins the
  // fusion, and y moves past that op; null where there is none.
  auto absorb = [&](const char* op) -> Value* {
    Node* n = only_consumer(y);
    if (!is_op(n, op, 2)) return nullptr;
    Value* c = other_input(n, y);
    if (!c || !c->is_constant()) return nullptr;
    nodes.push_back(n);
    y = n->outputs[0];
    return c;
  };
  Value* gamma = absorb("Mul");
  Value* beta = absorb("Add");
  // SiLU: y feeds exactly Sigmoid(y) and Mul(y, that).
  std::string activation;
  if (y->consumers.size() == 2 && !y->is_graph_output) {
    Node* sig = nullptr;
    Node* mul = nullptr;
    for (Node* c : y->consumers) {
      if (is_op(c, "Sigmoid", 1)) sig = c;
      if (is_op(c, "Mul", 2)) mul = c;
    }
    if (sig && mul && single_use(sig->outputs[0]) && other_input(mul, y) == sig->outputs[0]) {
      nodes.push_back(sig);
      nodes.push_back(mul);
      y = mul->outputs[0];
      activation = "SiLU";
    }
  }
  Attribute g;
  g.kind = Attribute::Kind::kInt;
  g.i = groups;
  Attribute eps;
  eps.kind = Attribute::Kind::kFloat;
  eps.f = in->attr_float_or("epsilon", 1e-5f);
  Node* fused = pattern::splice(graph, nodes, "GroupNorm", kFusedDomain, {x, gamma, beta}, y);
  fused->attrs["num_groups"] = g;
  fused->attrs["epsilon"] = eps;
  if (!activation.empty()) fused->attrs["activation"] = string_attr(activation);
  return true;
}

}  // namespace

int fuse_group_norm(Graph& graph) {
  return pattern::fuse_until_done(graph, try_fuse);
}

}  // namespace tandem

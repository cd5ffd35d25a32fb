// Gelu fusion: the two forms torch exports for GELU become one Gelu (com.tandem) node.
//   erf:  x * 0.5 * (1 + Erf(x / sqrt(2)))           approximate = "none"
//         (Div by sqrt(2) or Mul by 1/sqrt(2))
//   tanh: x * 0.5 * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))   approximate = "tanh"
//         (x^3 as Mul(x, Mul(x, x)) or Pow(x, 3))
// The three final multiplications may come in any association: (x * t) * 0.5, (x * 0.5) * t or
// x * (t * 0.5), with t = 1 + erf(...) or 1 + tanh(...), operands in either order.
#include <cmath>
#include <numbers>
#include <optional>
#include <vector>

#include "optimizer/passes.h"
#include "optimizer/pattern_util.h"
#include "ops/schema.h"

namespace tandem {

namespace {

using pattern::is_op;
using pattern::is_scalar;
using pattern::only_consumer;
using pattern::other_input;
using pattern::single_use;

struct Match {
  Value* out = nullptr;
  std::vector<Node*> nodes;
};

// Whether `v` is Mul(w, c) or Mul(c, w) with c the scalar `want`, single use; returns w.
Value* times_scalar(const Value* v, double want, std::vector<Node*>& nodes) {
  Node* n = pattern::producer(v, "Mul");
  if (!single_use(v) || !is_op(n, "Mul", 2)) return nullptr;
  for (int i = 0; i < 2; ++i) {
    if (is_scalar(n->inputs[i], want)) {
      nodes.push_back(n);
      return n->inputs[1 - i];
    }
  }
  return nullptr;
}

// From t = 1 + f(x) (single use): the multiplications by x and 0.5 that end the pattern.
std::optional<Match> final_product(Value* t, Value* x) {
  Node* m = only_consumer(t);
  if (!is_op(m, "Mul", 2)) return std::nullopt;
  Value* other = other_input(m, t);
  if (!other) return std::nullopt;
  Match r;
  r.nodes.push_back(m);
  if (other == x) {  // (x * t) * 0.5
    Node* half = only_consumer(m->outputs[0]);
    if (!is_op(half, "Mul", 2) || !is_scalar(other_input(half, m->outputs[0]), 0.5))
      return std::nullopt;
    r.nodes.push_back(half);
    r.out = half->outputs[0];
    return r;
  }
  if (is_scalar(other, 0.5)) {  // x * (t * 0.5)
    Node* by_x = only_consumer(m->outputs[0]);
    if (!is_op(by_x, "Mul", 2) || other_input(by_x, m->outputs[0]) != x) return std::nullopt;
    r.nodes.push_back(by_x);
    r.out = by_x->outputs[0];
    return r;
  }
  // (x * 0.5) * t
  if (times_scalar(other, 0.5, r.nodes) != x) return std::nullopt;
  r.out = m->outputs[0];
  return r;
}

// 1 + e, with e single use: the Add's output.
Value* plus_one(Value* e, std::vector<Node*>& nodes) {
  Node* add = only_consumer(e);
  if (!single_use(e) || !is_op(add, "Add", 2) || !is_scalar(other_input(add, e), 1.0))
    return nullptr;
  if (!single_use(add->outputs[0])) return nullptr;
  nodes.push_back(add);
  return add->outputs[0];
}

// x^3 as Mul(x, Mul(x, x)) (either order) or Pow(x, 3): whether `cube` is that, single use.
bool is_cube_of(Value* cube, Value* x, std::vector<Node*>& nodes) {
  if (!single_use(cube)) return false;
  if (Node* pow = pattern::producer(cube, "Pow")) {
    if (!is_op(pow, "Pow", 2) || pow->inputs[0] != x || !is_scalar(pow->inputs[1], 3.0))
      return false;
    nodes.push_back(pow);
    return true;
  }
  Node* m = pattern::producer(cube, "Mul");
  if (!is_op(m, "Mul", 2)) return false;
  Value* sq = other_input(m, x);
  Node* s = pattern::producer(sq, "Mul");
  if (!sq || !single_use(sq) || !is_op(s, "Mul", 2) || s->inputs[0] != x || s->inputs[1] != x)
    return false;
  nodes.push_back(s);
  nodes.push_back(m);
  return true;
}

}  // namespace

int fuse_gelu(Graph& graph) {
  int fused = 0;
  for (;;) {
    bool changed = false;
    for (auto& up : graph.nodes()) {
      Node* n = up.get();
      std::vector<Node*> nodes;
      Value* x = nullptr;
      std::string approximate;
      if (is_op(n, "Erf", 1) && single_use(n->inputs[0])) {
        Value* d = n->inputs[0];
        if (Node* div = pattern::producer(d, "Div"); is_op(div, "Div", 2)) {
          if (is_scalar(div->inputs[1], std::sqrt(2.0))) {
            x = div->inputs[0];
            nodes.push_back(div);
          }
        } else {
          x = times_scalar(d, std::sqrt(0.5), nodes);
        }
        approximate = "none";
      } else if (is_op(n, "Tanh", 1)) {
        // Tanh(sqrt(2/pi) * (x + 0.044715 * x^3))
        Value* inner = times_scalar(n->inputs[0], std::sqrt(2.0 / std::numbers::pi), nodes);
        Node* add = pattern::producer(inner, "Add");
        if (inner && single_use(inner) && is_op(add, "Add", 2)) {
          nodes.push_back(add);
          for (int i = 0; i < 2 && !x; ++i) {
            std::vector<Node*> cube_nodes;
            Value* cube = times_scalar(add->inputs[i], 0.044715, cube_nodes);
            if (cube && is_cube_of(cube, add->inputs[1 - i], cube_nodes)) {
              x = add->inputs[1 - i];
              nodes.insert(nodes.end(), cube_nodes.begin(), cube_nodes.end());
            }
          }
        }
        approximate = "tanh";
      }
      if (!x) continue;
      nodes.push_back(n);
      Value* t = plus_one(n->outputs[0], nodes);
      if (!t) continue;
      std::optional<Match> m = final_product(t, x);
      if (!m) continue;
      nodes.insert(nodes.end(), m->nodes.begin(), m->nodes.end());
      Node* gelu = pattern::splice(graph, nodes, "Gelu", kFusedDomain, {x}, m->out);
      Attribute a;
      a.kind = Attribute::Kind::kString;
      a.s = approximate;
      gelu->attrs["approximate"] = a;
      ++fused;
      changed = true;
      break;  // the node list changed: scan again
    }
    if (!changed) break;
  }
  return fused;
}

}  // namespace tandem

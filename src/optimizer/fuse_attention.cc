// Attention fusion: scaled dot-product attention as torch exports it,
//   S = MatMul(Q, K^T) [* scale | / d] [+ mask] [Where(keep, S, fill)];  P = Softmax(S, -1)
//   Y = MatMul(P, V)
// becomes one Attention (com.tandem) node. The Transposes that lay out the heads around it (Q and
// V as [B, S, H, D] -> [B, H, S, D], K as [B, S, H, D] -> [B, H, D, S], Y back to [B, S, H, D])
// are absorbed into its q_perm / k_perm / v_perm / out_perm attributes when nothing else reads
// their results, so the CPU kernel reads the projections in place and writes the merged heads.
#include <optional>
#include <vector>

#include "optimizer/passes.h"
#include "optimizer/pattern_util.h"
#include "ops/schema.h"

namespace tandem {

namespace {

using pattern::is_op;
using pattern::only_consumer;
using pattern::single_use;

Attribute ints_attr(std::vector<int64_t> v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(v);
  return a;
}
Attribute float_attr(float f) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = f;
  return a;
}

struct Scores {
  Node* matmul = nullptr;
  float scale = 1.0f;
  std::vector<Node*> nodes;  // the scale node, when there is one
};

// `v` as MatMul(..) [* c | / c] with single-use intermediates.
std::optional<Scores> scaled_scores(Value* v) {
  Scores s;
  if (!single_use(v)) return std::nullopt;
  Node* p = v->producer;
  if (is_op(p, "Mul", 2)) {
    for (int i = 0; i < 2; ++i) {
      std::optional<double> c = pattern::scalar_constant(p->inputs[i]);
      if (c && pattern::producer(p->inputs[1 - i], "MatMul")) {
        s.scale = static_cast<float>(*c);
        s.nodes.push_back(p);
        v = p->inputs[1 - i];
        break;
      }
    }
  } else if (is_op(p, "Div", 2)) {
    std::optional<double> c = pattern::scalar_constant(p->inputs[1]);
    if (c && *c != 0) {
      s.scale = static_cast<float>(1.0 / *c);
      s.nodes.push_back(p);
      v = p->inputs[0];
    }
  }
  Node* mm = pattern::producer(v, "MatMul");
  if (!single_use(v) || !is_op(mm, "MatMul", 2)) return std::nullopt;
  s.matmul = mm;
  return s;
}

// The Transpose (with an explicit perm) that alone reads into `v`, absorbed: its input and perm.
Value* absorb_transpose(Value* v, std::vector<int64_t>& perm, std::vector<Node*>& nodes) {
  Node* t = pattern::producer(v, "Transpose");
  if (!single_use(v) || !is_op(t, "Transpose", 1) || !t->has_attr("perm")) return v;
  perm = t->attr_ints("perm");
  nodes.push_back(t);
  return t->inputs[0];
}

bool try_fuse(Graph& graph, Node* sm) {
  if (!is_op(sm, "Softmax", 1)) return false;
  if (sm->attr_int_or("axis", sm->opset < 13 ? 1 : -1) != -1) return false;
  std::vector<Node*> nodes{sm};
  Value* s = sm->inputs[0];
  Value* keep = nullptr;
  Value* mask = nullptr;
  float fill = 0.0f;
  if (Node* w = pattern::producer(s, "Where"); is_op(w, "Where", 3) && single_use(s)) {
    std::optional<double> f = pattern::scalar_constant(w->inputs[2]);
    if (!f) return false;
    keep = w->inputs[0];
    fill = static_cast<float>(*f);
    nodes.push_back(w);
    s = w->inputs[1];
  }
  std::optional<Scores> scores;
  if (Node* add = pattern::producer(s, "Add"); is_op(add, "Add", 2) && single_use(s)) {
    for (int i = 0; i < 2 && !scores; ++i) {
      scores = scaled_scores(add->inputs[i]);
      if (scores) mask = add->inputs[1 - i];
    }
    if (!scores) return false;
    nodes.push_back(add);
  } else {
    scores = scaled_scores(s);
  }
  if (!scores) return false;
  nodes.insert(nodes.end(), scores->nodes.begin(), scores->nodes.end());
  Node* mm1 = scores->matmul;
  nodes.push_back(mm1);
  Node* mm2 = only_consumer(sm->outputs[0]);
  if (!is_op(mm2, "MatMul", 2) || mm2->inputs[0] != sm->outputs[0]) return false;
  nodes.push_back(mm2);
  if (mm1->inputs[0] == mm1->inputs[1]) return false;
  std::vector<int64_t> q_perm, k_perm, v_perm, out_perm;
  Value* q = absorb_transpose(mm1->inputs[0], q_perm, nodes);
  Value* k = absorb_transpose(mm1->inputs[1], k_perm, nodes);
  Value* v = absorb_transpose(mm2->inputs[1], v_perm, nodes);
  Value* out = mm2->outputs[0];
  if (Node* t = only_consumer(out); is_op(t, "Transpose", 1) && t->has_attr("perm")) {
    out_perm = t->attr_ints("perm");
    nodes.push_back(t);
    out = t->outputs[0];
  }
  const float scale = scores->scale;
  Node* fused =
      pattern::splice(graph, nodes, "Attention", kFusedDomain, {q, k, v, mask, keep}, out);
  fused->attrs["scale"] = float_attr(scale);
  if (keep) fused->attrs["fill"] = float_attr(fill);
  const std::pair<const char*, std::vector<int64_t>*> perms[] = {
      {"q_perm", &q_perm}, {"k_perm", &k_perm}, {"v_perm", &v_perm}, {"out_perm", &out_perm}};
  for (auto& [key, perm] : perms)
    if (!perm->empty()) fused->attrs[key] = ints_attr(*perm);
  return true;
}

}  // namespace

int fuse_attention(Graph& graph) {
  return pattern::fuse_until_done(graph, try_fuse);
}

}  // namespace tandem

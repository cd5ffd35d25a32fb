// GEGLU fusion: the gated feed-forward of diffusion transformers, as torch exports
// `a, g = x.chunk(2, dim=-1); y = a * F.gelu(g)`:
//   c = Mul(Div(Add(Gather(Shape(x), -1), 1), 2), 1)        (ceil(d / 2) for the last dim d)
//   a = Slice(x, 0, c, axes -1);  g = Slice(x, c, Mul(.., 2), axes -1)
//   y = Mul(a, Gelu(g))                                      (Gelu already fused by fuse_gelu)
// becomes one GeGLU(x) (com.tandem) node with the Gelu's approximate attribute; the shape
// arithmetic then has no consumer left and goes as dead code.
#include <optional>
#include <vector>

#include "optimizer/passes.h"
#include "optimizer/pattern_util.h"
#include "ops/schema.h"

namespace tandem {

namespace {

using pattern::is_op;
using pattern::other_input;
using pattern::single_use;

// The single value of a one-element int64 constant.
std::optional<int64_t> int_constant(const Value* v) {
  if (!v || !v->is_constant() || v->constant->dtype() != DataType::kInt64 ||
      v->constant->numel() != 1)
    return std::nullopt;
  return v->constant->data<int64_t>()[0];
}

bool is_int(const Value* v, int64_t want) {
  std::optional<int64_t> c = int_constant(v);
  return c && *c == want;
}

// Whether v = Mul(d, k) or Mul(k, d) with k the int64 constant `k`; returns d.
Value* times(const Value* v, int64_t k) {
  Node* m = pattern::producer(v, "Mul");
  if (!is_op(m, "Mul", 2)) return nullptr;
  for (int i = 0; i < 2; ++i)
    if (is_int(m->inputs[i], k)) return m->inputs[1 - i];
  return nullptr;
}

// Whether d = Div(Add(Gather(Shape(x), -1), 1), 2): ceil(x.shape[-1] / 2).
bool is_half_of_last_dim(const Value* d, const Value* x) {
  Node* div = pattern::producer(d, "Div");
  if (!is_op(div, "Div", 2) || !is_int(div->inputs[1], 2)) return false;
  Node* add = pattern::producer(div->inputs[0], "Add");
  if (!is_op(add, "Add", 2)) return false;
  Value* g = nullptr;
  for (int i = 0; i < 2; ++i)
    if (is_int(add->inputs[i], 1)) g = add->inputs[1 - i];
  Node* gather = pattern::producer(g, "Gather");
  if (!is_op(gather, "Gather", 2) || gather->attr_int_or("axis", 0) != 0 ||
      !is_int(gather->inputs[1], -1))
    return false;
  Node* shape = pattern::producer(gather->inputs[0], "Shape");
  return is_op(shape, "Shape", 1) && shape->inputs[0] == x && !shape->has_attr("start") &&
         !shape->has_attr("end");
}

// Slice(x, starts, ends, axes = [-1]) with no steps (or steps [1]): its starts and ends.
bool last_axis_slice(const Node* s, Value*& x, Value*& starts, Value*& ends) {
  if (!s || !s->domain.empty() || s->op_type != "Slice" || s->opset < 10) return false;
  if (s->inputs.size() < 4 || s->inputs.size() > 5) return false;
  for (size_t i = 0; i < 4; ++i)
    if (!s->inputs[i]) return false;
  if (!is_int(s->inputs[3], -1)) return false;
  if (s->inputs.size() == 5 && s->inputs[4] && !is_int(s->inputs[4], 1)) return false;
  x = s->inputs[0];
  starts = s->inputs[1];
  ends = s->inputs[2];
  return true;
}

bool try_fuse(Graph& graph, Node* mul) {
  if (!is_op(mul, "Mul", 2)) return false;
  for (int i = 0; i < 2; ++i) {
    Value* a = mul->inputs[i];
    Value* gelu_out = mul->inputs[1 - i];
    Node* gelu = gelu_out->producer;
    if (!gelu || gelu->domain != kFusedDomain || gelu->op_type != "Gelu" || !single_use(gelu_out) ||
        !single_use(a) || gelu->inputs.size() != 1)
      continue;
    Value* g = gelu->inputs[0];
    Node* s0 = a->producer;
    Node* s1 = g ? g->producer : nullptr;
    Value *x0, *start0, *end0, *x1, *start1, *end1;
    if (!single_use(g) || !last_axis_slice(s0, x0, start0, end0) ||
        !last_axis_slice(s1, x1, start1, end1) || x0 != x1 || !is_int(start0, 0) || end0 != start1)
      continue;
    Value* half = times(end0, 1);
    if (!half || times(end1, 2) != half || !is_half_of_last_dim(half, x0)) continue;
    Attribute approx;
    approx.kind = Attribute::Kind::kString;
    approx.s = gelu->attr_string_or("approximate", "none");
    Node* fused =
        pattern::splice(graph, {s0, s1, gelu, mul}, "GeGLU", kFusedDomain, {x0}, mul->outputs[0]);
    fused->attrs["approximate"] = approx;
    return true;
  }
  return false;
}

}  // namespace

int fuse_geglu(Graph& graph) {
  return pattern::fuse_until_done(graph, try_fuse);
}

}  // namespace tandem

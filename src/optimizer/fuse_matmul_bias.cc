// MatMul + bias (+ residual) fusion: a projection as torch exports it,
//   y = Add(MatMul(x, W), b)  [then Add(y, r)]
// with W a constant [K, N] and b a constant of N values along the last dim, becomes one
// FusedMatMul(x, W, b[, r]) (com.tandem) node, which oneDNN runs as one matmul with a bias and,
// for the residual r (any tensor, typically the block's input), a post-op add.
#include <vector>

#include "optimizer/passes.h"
#include "optimizer/pattern_util.h"
#include "ops/schema.h"

namespace tandem {

namespace {

using pattern::is_op;
using pattern::only_consumer;
using pattern::other_input;

// Whether `b` is a constant of N values laid along the last dim ([N], [1, N], ...).
bool is_bias_row(const Value* b, int64_t n) {
  if (!b || !b->is_constant()) return false;
  const Shape& s = b->constant->shape();
  return !s.empty() && s.back() == n && b->constant->numel() == n;
}

bool try_fuse(Graph& graph, Node* mm) {
  if (!is_op(mm, "MatMul", 2)) return false;
  const Value* w = mm->inputs[1];
  if (!w->is_constant() || w->constant->rank() != 2) return false;
  const int64_t n = w->constant->dim(1);
  Node* add = only_consumer(mm->outputs[0]);
  if (!is_op(add, "Add", 2)) return false;
  Value* bias = other_input(add, mm->outputs[0]);
  if (!is_bias_row(bias, n)) return false;
  std::vector<Node*> nodes{mm, add};
  Value* y = add->outputs[0];
  Value* residual = nullptr;
  if (Node* res = only_consumer(y); is_op(res, "Add", 2)) {
    Value* r = other_input(res, y);
    if (r && !r->is_constant()) {
      residual = r;
      nodes.push_back(res);
      y = res->outputs[0];
    }
  }
  std::vector<Value*> inputs{mm->inputs[0], mm->inputs[1], bias};
  if (residual) inputs.push_back(residual);
  pattern::splice(graph, nodes, "FusedMatMul", kFusedDomain, inputs, y);
  return true;
}

}  // namespace

int fuse_matmul_bias(Graph& graph) {
  return pattern::fuse_until_done(graph, try_fuse);
}

}  // namespace tandem

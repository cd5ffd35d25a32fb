// What the fusion passes share to recognise the patterns torch exports: typed producers,
// single-use checks, scalar constants, and the splice that swaps matched nodes for a fused one.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem::pattern {

// v's producer when it is a default-domain `op_type` node, else nullptr.
inline Node* producer(const Value* v, const char* op_type) {
  if (!v || !v->producer) return nullptr;
  Node* n = v->producer;
  return n->domain.empty() && n->op_type == op_type ? n : nullptr;
}

// Whether v feeds exactly one node input and is not a graph output (so the nodes computing it
// can go once that consumer is fused).
inline bool single_use(const Value* v) {
  return v && v->consumers.size() == 1 && !v->is_graph_output;
}

// The only consumer of v when it has exactly one and is not a graph output.
inline Node* only_consumer(const Value* v) {
  return single_use(v) ? v->consumers[0] : nullptr;
}

// Whether `n` is a default-domain `op_type` node with `count` inputs, all present.
inline bool is_op(const Node* n, const char* op_type, size_t count) {
  if (!n || !n->domain.empty() || n->op_type != op_type || n->inputs.size() != count) return false;
  for (const Value* v : n->inputs)
    if (!v) return false;
  return true;
}

// The value of a one-element float constant (float32 or float64), else nothing.
inline std::optional<double> scalar_constant(const Value* v) {
  if (!v || !v->is_constant()) return std::nullopt;
  const Tensor& t = *v->constant;
  if (t.numel() != 1) return std::nullopt;
  if (t.dtype() == DataType::kFloat32) return t.data<float>()[0];
  if (t.dtype() == DataType::kFloat64) return t.data<double>()[0];
  return std::nullopt;
}

// Whether v is a one-element float constant within a relative 1e-4 of `want`.
inline bool is_scalar(const Value* v, double want) {
  std::optional<double> c = scalar_constant(v);
  return c && std::abs(*c - want) <= 1e-4 * std::abs(want);
}

// Whether v is a float constant whose elements all equal `want`.
inline bool all_equal(const Value* v, float want) {
  if (!v || !v->is_constant()) return false;
  const Tensor& t = *v->constant;
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (t.dtype() == DataType::kFloat32 && t.data<float>()[i] == want) continue;
    if (t.dtype() == DataType::kFloat64 && t.data<double>()[i] == want) continue;
    return false;
  }
  return t.numel() > 0;
}

// For a two-input node with `v` as one input: the other one (nullptr when v is not an input,
// or when both inputs are v).
inline Value* other_input(const Node* n, const Value* v) {
  if (!n || n->inputs.size() != 2) return nullptr;
  if (n->inputs[0] == v && n->inputs[1] != v) return n->inputs[1];
  if (n->inputs[1] == v && n->inputs[0] != v) return n->inputs[0];
  return nullptr;
}

// Replaces the matched nodes `doomed` by one new node: it reads `inputs`, produces `output`
// (the matched subgraph's result value, which keeps its name and consumers) and lives in
// `domain`; the new node takes the place of the last doomed node. The graph is re-sorted.
Node* splice(Graph& graph, const std::vector<Node*>& doomed, const std::string& op_type,
             const std::string& domain, const std::vector<Value*>& inputs, Value* output);

// Runs `try_fuse` on every node until no node fuses any more (a fusion changes the node list, so
// the scan restarts after each one); returns the number of fusions.
int fuse_until_done(Graph& graph, bool (*try_fuse)(Graph& graph, Node* node));

}  // namespace tandem::pattern

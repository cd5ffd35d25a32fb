#include <vector>

#include "optimizer/passes.h"
#include "backends/ref/evaluate.h"

namespace tandem {

namespace {
// Ops whose value must not be computed ahead of time.
bool is_foldable(const Node& n) {
  return n.domain.empty() && n.op_type.rfind("Random", 0) != 0 && n.op_type != "Multinomial";
}
}  // namespace

int fold_constants(Graph& graph) {
  std::vector<Node*> folded;
  FoldBudget budget{graph.limits.max_tensor_bytes};
  for (auto& n : graph.nodes()) {
    if (!is_foldable(*n)) continue;
    bool all_constant = true;
    for (Value* v : n->inputs)
      if (v && !v->is_constant()) all_constant = false;
    if (!all_constant) continue;
    std::vector<const Tensor*> inputs;
    for (Value* v : n->inputs) inputs.push_back(v ? &*v->constant : nullptr);
    // Nodes are in topological order, so a folded value is visible to the nodes after it.
    // A node whose result would be too large to compute now stays a node (run time applies
    // max_tensor_bytes to it): a 65-byte model must not make `tandem info` allocate gigabytes.
    std::optional<std::vector<Tensor>> folded_values = fold_on_reference(*n, inputs, budget);
    if (!folded_values) continue;
    std::vector<Tensor>& values = *folded_values;
    for (size_t i = 0; i < n->outputs.size(); ++i) {
      Value* out = n->outputs[i];
      if (!out) continue;
      values[i].set_name(out->name);
      out->dtype = values[i].dtype();
      out->shape = values[i].shape();
      out->shape_known = true;
      out->constant = std::move(values[i]);
    }
    folded.push_back(n.get());
  }
  for (Node* n : folded) graph.remove_node(n);
  if (!folded.empty()) graph.remove_unused_values();
  return static_cast<int>(folded.size());
}

void run_default_passes(Graph& graph) {
  for (;;) {
    int changed = remove_identity_nodes(graph) + fold_constants(graph) + remove_dead_nodes(graph);
    if (!changed) break;
  }
}

}  // namespace tandem

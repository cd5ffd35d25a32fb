#include "optimizer/pattern_util.h"

namespace tandem::pattern {

Node* splice(Graph& graph, const std::vector<Node*>& doomed, const std::string& op_type,
             const std::string& domain, const std::vector<Value*>& inputs, Value* output) {
  const std::string name = output->producer ? output->producer->name : output->name;
  for (Node* n : doomed) graph.remove_node(n);
  Node* fused = graph.add_node(op_type, name, inputs, {output});
  fused->domain = domain;
  fused->opset = 1;
  graph.remove_unused_values();
  graph.topological_sort();
  return fused;
}

int fuse_until_done(Graph& graph, bool (*try_fuse)(Graph& graph, Node* node)) {
  int fused = 0;
  for (bool changed = true; changed;) {
    changed = false;
    for (auto& n : graph.nodes()) {
      if (try_fuse(graph, n.get())) {
        ++fused;
        changed = true;
        break;  // the node list changed: scan again
      }
    }
  }
  return fused;
}

}  // namespace tandem::pattern

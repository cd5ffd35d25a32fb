#include "optimizer/passes.h"

#include <vector>

namespace tandem {

int remove_identity_nodes(Graph& graph) {
  std::vector<Node*> doomed;
  for (auto& n : graph.nodes()) {
    bool identity = n->op_type == "Identity" ||
                    // Dropout is the identity at inference; its optional mask output must be
                    // unused for the rewrite to hold, and before opset 7 `is_test` = 0 (the
                    // default) meant training: that one stays for its kernel to refuse.
                    (n->op_type == "Dropout" && (n->opset >= 7 || n->attr_int_or("is_test", 0)) &&
                     (n->outputs.size() < 2 || !n->outputs[1] ||
                      (n->outputs[1]->consumers.empty() && !n->outputs[1]->is_graph_output)));
    if (!identity || !n->domain.empty() || n->inputs.empty() || !n->inputs[0]) continue;
    Value* out = n->outputs[0];
    // A graph output keeps its name, so an Identity producing one stays.
    if (!out || out->is_graph_output) continue;
    graph.replace_all_uses(out, n->inputs[0]);
    doomed.push_back(n.get());
  }
  for (Node* n : doomed) graph.remove_node(n);
  if (!doomed.empty()) graph.remove_unused_values();
  return static_cast<int>(doomed.size());
}

}  // namespace tandem

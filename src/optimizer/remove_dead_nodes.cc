#include "optimizer/passes.h"

namespace tandem {

int remove_dead_nodes(Graph& graph) {
  int removed = 0;
  // Walk backwards so a chain of dead nodes goes in one sweep.
  for (size_t i = graph.nodes().size(); i-- > 0;) {
    Node* n = graph.nodes()[i].get();
    bool used = false;
    for (Value* v : n->outputs)
      if (v && (!v->consumers.empty() || v->is_graph_output)) used = true;
    if (used) continue;
    graph.remove_node(n);
    ++removed;
  }
  if (removed) graph.remove_unused_values();
  return removed;
}

}  // namespace tandem

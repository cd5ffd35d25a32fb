#include <algorithm>
#include <vector>

#include "optimizer/passes.h"

namespace tandem {

namespace {
// A Pad whose pads are all zero copies its input (whatever the mode): torch exports
// AvgPool2d(padding=0) as one (DenseNet's transitions).
bool is_zero_pad(const Node& n) {
  if (n.op_type != "Pad") return false;
  std::vector<int64_t> pads;
  if (n.opset >= 11) {
    if (!n.has_input(1) || !n.inputs[1]->is_constant()) return false;
    const Tensor& t = *n.inputs[1]->constant;
    if (t.dtype() != DataType::kInt64) return false;
    pads.assign(t.data<int64_t>(), t.data<int64_t>() + t.numel());
  } else {
    pads = n.attr_ints_or(n.opset >= 2 ? "pads" : "paddings", {});
  }
  return !pads.empty() && std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p == 0; });
}
}  // namespace

int remove_identity_nodes(Graph& graph) {
  std::vector<Node*> doomed;
  for (auto& n : graph.nodes()) {
    bool identity = n->op_type == "Identity" ||
                    // Dropout is the identity at inference; its optional mask output must be
                    // unused for the rewrite to hold, and before opset 7 `is_test` = 0 (the
                    // default) meant training: that one stays for its kernel to refuse.
                    (n->op_type == "Dropout" && (n->opset >= 7 || n->attr_int_or("is_test", 0)) &&
                     (n->outputs.size() < 2 || !n->outputs[1] ||
                      (n->outputs[1]->consumers.empty() && !n->outputs[1]->is_graph_output))) ||
                    is_zero_pad(*n);
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

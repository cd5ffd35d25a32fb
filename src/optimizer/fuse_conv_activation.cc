// Fuses a Conv with what follows it into one FusedConv (kFusedDomain):
//
//   Conv -> [Add(Conv output, Z)] -> [activation]    =>   FusedConv(X, W, B, Z, activation)
//
// The activations are the ones torch exports: Relu, LeakyRelu, Clip with constant bounds
// (ReLU6), Sigmoid, HardSigmoid, HardSwish, Tanh, SiLU written as Mul(y, Sigmoid(y)) and
// HardSwish written as Mul(y, HardSigmoid(y)) with alpha 1/6, beta 1/2. Z is the other operand of
// an Add (a residual); FusedConv broadcasts it like Add does, so its shape need not be known
// here. Every intermediate value must be used by the pattern alone and not be a graph output.
// A FusedConv with no activation yet (Conv + Add) can take a following activation in a later
// round.
//
// The fused node takes the place of the pattern's last node, so Z (which may be computed after
// the Conv) is ready when it runs; the pattern's other nodes go.
//
// The channels-last BatchNormalization (kFusedDomain, ops/layout.h: a BN no conv could absorb,
// such as DenseNet's pre-activation BN -> Relu) takes a following activation the same way, so
// the data is read and written once instead of twice. It exists only after the channels-last
// pass, so this happens in the fusion table's next round.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ops/fused_activation.h"
#include "ops/layout.h"
#include "ops/schema.h"
#include "optimizer/passes.h"

namespace tandem {

namespace {

// The node that alone reads `v` (once), when `v` is not a graph output; else nullptr.
Node* sole_consumer(const Value* v) {
  if (!v || v->is_graph_output || v->consumers.size() != 1) return nullptr;
  return v->consumers[0];
}

bool is_onnx(const Node* n, const char* op) {
  return n && n->domain.empty() && n->op_type == op;
}

// Recognises the single-node activation `n` applied to its input 0; false if it is none.
bool single_node_activation(const Node& n, FusedActivation& act) {
  if (!n.domain.empty() || n.inputs.empty() || n.outputs.size() != 1 || !n.outputs[0]) return false;
  const std::string& op = n.op_type;
  if (op == "Relu") {
    act = {ActivationKind::kRelu};
  } else if (op == "LeakyRelu") {
    act = {ActivationKind::kLeakyRelu, n.attr_float_or("alpha", 0.01f)};
  } else if (op == "Sigmoid") {
    act = {ActivationKind::kSigmoid};
  } else if (op == "Tanh") {
    act = {ActivationKind::kTanh};
  } else if (op == "HardSwish") {
    act = {ActivationKind::kHardSwish};
  } else if (op == "HardSigmoid") {
    act = {ActivationKind::kHardSigmoid, n.attr_float_or("alpha", 0.2f),
           n.attr_float_or("beta", 0.5f)};
  } else if (op == "Clip") {
    float lo = 0, hi = 0;
    if (!static_clip_bounds(n, lo, hi)) return false;
    act = {ActivationKind::kClip, lo, hi};
  } else {
    return false;
  }
  return true;
}

// The activation applied to `v` by the node(s) reading it, with the nodes it spans (the last
// one writes the result). Recognises single-node activations and x * Sigmoid(x) (SiLU),
// x * HardSigmoid(x) with alpha 1/6, beta 1/2 (HardSwish).
bool match_activation(const Value* v, FusedActivation& act, std::vector<Node*>& nodes) {
  if (!v || v->is_graph_output) return false;
  if (v->consumers.size() == 1) {
    Node* n = v->consumers[0];
    if (!single_node_activation(*n, act) || n->inputs[0] != v) return false;
    // Clip's bounds are other inputs; anything else reading `v` twice is not an activation.
    for (size_t i = 1; i < n->inputs.size(); ++i)
      if (n->inputs[i] == v) return false;
    nodes = {n};
    return true;
  }
  if (v->consumers.size() != 2) return false;
  Node* gate = v->consumers[0];
  Node* mul = v->consumers[1];
  if (is_onnx(gate, "Mul")) std::swap(gate, mul);
  if (!is_onnx(mul, "Mul") || mul->inputs.size() != 2 || gate->inputs.size() != 1 ||
      gate->outputs.size() != 1 || sole_consumer(gate->outputs[0]) != mul || !mul->outputs[0])
    return false;
  const bool operands = (mul->inputs[0] == v && mul->inputs[1] == gate->outputs[0]) ||
                        (mul->inputs[1] == v && mul->inputs[0] == gate->outputs[0]);
  if (!operands) return false;
  if (is_onnx(gate, "Sigmoid")) {
    act = {ActivationKind::kSiLU};
  } else if (is_onnx(gate, "HardSigmoid") &&
             std::abs(gate->attr_float_or("alpha", 0.2f) - 1.0f / 6.0f) < 1e-6f &&
             gate->attr_float_or("beta", 0.5f) == 0.5f) {
    act = {ActivationKind::kHardSwish};
  } else {
    return false;
  }
  nodes = {gate, mul};
  return true;
}

// A channels-last BatchNormalization without an activation, followed by one: the activation
// moves into its attributes and its nodes go.
bool fuse_batch_norm_activation(Graph& graph, Node* bn) {
  if (bn->domain != kFusedDomain || bn->op_type != "BatchNormalization" || !is_channels_last(*bn) ||
      bn->outputs.size() != 1 || !bn->outputs[0] ||
      read_fused_activation(*bn).kind != ActivationKind::kNone)
    return false;
  FusedActivation act;
  std::vector<Node*> act_nodes;
  if (!match_activation(bn->outputs[0], act, act_nodes)) return false;
  // The BN writes the activation's output value in its place.
  Value* out = act_nodes.back()->outputs[0];
  for (auto it = act_nodes.rbegin(); it != act_nodes.rend(); ++it) graph.remove_node(*it);
  Value* old = bn->outputs[0];
  bn->outputs[0] = out;
  out->producer = bn;
  old->producer = nullptr;
  set_fused_activation(*bn, act);
  return true;
}

}  // namespace

int fuse_conv_activation(Graph& graph) {
  int fused = 0;
  std::vector<Node*> norms;
  for (auto& n : graph.nodes())
    if (n->op_type == "BatchNormalization") norms.push_back(n.get());
  for (Node* bn : norms) fused += fuse_batch_norm_activation(graph, bn);
  std::vector<Node*> starts;
  for (auto& n : graph.nodes()) {
    const bool conv = n->domain.empty() && n->op_type == "Conv";
    const bool open_fused = n->domain == kFusedDomain && n->op_type == "FusedConv" &&
                            read_fused_activation(*n).kind == ActivationKind::kNone;
    if ((conv || open_fused) && n->outputs.size() == 1 && n->outputs[0]) starts.push_back(n.get());
  }
  for (Node* start : starts) {
    Value* cur = start->outputs[0];
    std::vector<Node*> absorbed;  // the nodes after `start`, in order
    Value* z = start->inputs.size() > 3 ? start->inputs[3] : nullptr;
    if (!z) {
      Node* add = sole_consumer(cur);
      if (is_onnx(add, "Add") && add->inputs.size() == 2 && add->outputs.size() == 1 &&
          add->outputs[0] && add->inputs[0] != add->inputs[1]) {
        z = add->inputs[0] == cur ? add->inputs[1] : add->inputs[0];
        absorbed.push_back(add);
        cur = add->outputs[0];
      }
    }
    FusedActivation act;
    std::vector<Node*> act_nodes;
    if (match_activation(cur, act, act_nodes))
      absorbed.insert(absorbed.end(), act_nodes.begin(), act_nodes.end());
    if (absorbed.empty()) continue;

    // The last node becomes the FusedConv: it keeps its output and its place in the order.
    Node* last = absorbed.back();
    std::vector<Value*> inputs = start->inputs;
    inputs.resize(3, nullptr);
    if (z) inputs.push_back(z);
    for (Value* v : last->inputs) {
      if (!v) continue;
      auto it = std::find(v->consumers.begin(), v->consumers.end(), last);
      if (it != v->consumers.end()) v->consumers.erase(it);
    }
    last->inputs = inputs;
    for (Value* v : inputs)
      if (v) v->consumers.push_back(last);
    last->op_type = "FusedConv";
    last->domain = kFusedDomain;
    last->opset = start->opset;
    last->attrs = start->attrs;
    set_fused_activation(*last, act);
    if (start->name.size()) last->name = start->name;
    // The rest of the pattern goes, in reverse so no removed node is still read.
    absorbed.pop_back();
    for (auto it = absorbed.rbegin(); it != absorbed.rend(); ++it) graph.remove_node(*it);
    graph.remove_node(start);
    ++fused;
  }
  if (fused) graph.remove_unused_values();
  return fused;
}

}  // namespace tandem

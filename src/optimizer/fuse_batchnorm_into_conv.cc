// Folds an inference BatchNormalization that follows a Conv into the Conv's weights and bias:
//
//   Y = BN(Conv(X, W, B)) = (Conv(X, W, B) - mean) * s + beta,  s = scale / sqrt(var + eps)
//     = Conv(X, W * s[m], (B - mean) * s + beta)               (s[m] scales output channel m)
//
// It applies when W, B (if any) and the four BN parameters are constants of the same float
// dtype, the Conv's output feeds only the BN and is not a graph output, and the BN is a plain
// per-channel inference one (not training mode, not the opset < 9 per-element form). The new
// weights are new constants (W may be shared by other nodes); they are computed in double and
// rounded once.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "optimizer/passes.h"

namespace tandem {

namespace {

bool is_float_constant(const Value* v, DataType dtype) {
  return v && v->is_constant() && v->constant->dtype() == dtype;
}

double element(const Tensor& t, int64_t i) {
  return t.dtype() == DataType::kFloat64 ? t.data<double>()[i] : double(t.data<float>()[i]);
}

void set_element(Tensor& t, int64_t i, double v) {
  if (t.dtype() == DataType::kFloat64) {
    t.data<double>()[i] = v;
  } else {
    t.data<float>()[i] = static_cast<float>(v);
  }
}

// Whether `bn` is an inference BatchNormalization with per-channel parameters.
bool is_inference_batch_norm(const Node& bn) {
  if (bn.op_type != "BatchNormalization" || !bn.domain.empty() || bn.inputs.size() != 5)
    return false;
  for (size_t i = 1; i < bn.outputs.size(); ++i)
    if (bn.outputs[i]) return false;  // training statistics asked for
  if (bn.opset >= 14 && bn.attr_int_or("training_mode", 0) != 0) return false;
  if (bn.opset < 9 && bn.attr_int_or("spatial", 1) == 0) return false;
  if (bn.opset < 7 && bn.attr_int_or("is_test", 0) == 0) return false;
  return true;
}

// A new constant value holding `t`.
Value* constant_value(Graph& graph, const std::string& name, Tensor t) {
  Value* v = graph.add_value(name);
  t.set_name(v->name);
  v->dtype = t.dtype();
  v->shape = t.shape();
  v->shape_known = true;
  v->constant = std::move(t);
  return v;
}

// Makes input i of `node` (appended if missing) read `v`.
void set_input(Node& node, size_t i, Value* v) {
  if (node.inputs.size() <= i) node.inputs.resize(i + 1, nullptr);
  if (Value* old = node.inputs[i]) {
    auto it = std::find(old->consumers.begin(), old->consumers.end(), &node);
    if (it != old->consumers.end()) old->consumers.erase(it);
  }
  node.inputs[i] = v;
  v->consumers.push_back(&node);
}

}  // namespace

int fuse_batchnorm_into_conv(Graph& graph) {
  int folded = 0;
  // Collected first: the rewrite removes nodes.
  std::vector<Node*> bns;
  for (auto& node : graph.nodes())
    if (is_inference_batch_norm(*node)) bns.push_back(node.get());
  for (Node* bn_ptr : bns) {
    Node& bn = *bn_ptr;
    if (!bn.inputs[0] || !bn.outputs[0]) continue;
    Value* y = bn.inputs[0];
    Node* conv = y->producer;
    if (!conv || conv->op_type != "Conv" || !conv->domain.empty() || y->consumers.size() != 1 ||
        y->is_graph_output || conv->outputs.size() != 1 || !conv->has_input(1))
      continue;
    Value* w = conv->inputs[1];
    if (!w->is_constant() || w->constant->rank() < 3) continue;
    const DataType dt = w->constant->dtype();
    if (dt != DataType::kFloat32 && dt != DataType::kFloat64) continue;
    const int64_t m = w->constant->dim(0);
    Value* b = conv->has_input(2) ? conv->inputs[2] : nullptr;
    if (b && (!is_float_constant(b, dt) || b->constant->numel() != m)) continue;
    bool params_ok = true;
    for (size_t i = 1; i < 5; ++i)
      if (!is_float_constant(bn.inputs[i], dt) || bn.inputs[i]->constant->numel() != m)
        params_ok = false;
    if (!params_ok) continue;

    const Tensor& scale = *bn.inputs[1]->constant;
    const Tensor& beta = *bn.inputs[2]->constant;
    const Tensor& mean = *bn.inputs[3]->constant;
    const Tensor& var = *bn.inputs[4]->constant;
    const double eps = bn.attr_float_or("epsilon", 1e-5f);
    Tensor new_w(dt, w->constant->shape());
    Tensor new_b(dt, {m});
    const int64_t per_channel = w->constant->numel() / m;
    for (int64_t c = 0; c < m; ++c) {
      const double s = element(scale, c) / std::sqrt(element(var, c) + eps);
      for (int64_t i = c * per_channel; i < (c + 1) * per_channel; ++i)
        set_element(new_w, i, element(*w->constant, i) * s);
      const double bias = b ? element(*b->constant, c) : 0.0;
      set_element(new_b, c, (bias - element(mean, c)) * s + element(beta, c));
    }
    // The Conv takes the new constants and writes the BN's output; the BN goes.
    set_input(*conv, 1, constant_value(graph, w->name + "_bn", std::move(new_w)));
    set_input(*conv, 2,
              constant_value(graph, (b ? b->name : conv->name + "_B") + "_bn", std::move(new_b)));
    Value* out = bn.outputs[0];
    graph.remove_node(&bn);
    conv->outputs[0] = out;
    out->producer = conv;
    ++folded;
  }
  if (folded) graph.remove_unused_values();
  return folded;
}

}  // namespace tandem

#include "backends/ref/op_chain.h"

#include <cstring>

#include "core/error.h"
#include "ops/schema.h"
#include "backends/ref/ref_backend.h"

namespace tandem {

OpChain::OpChain(const Node& fused) : fused_(fused) {}

Value* OpChain::input(size_t i) {
  auto it = inputs_.find(i);
  if (it != inputs_.end()) return it->second;
  Value* v = graph_.add_value("input" + std::to_string(i));
  v->is_graph_input = true;
  return inputs_[i] = v;
}

Value* OpChain::constant(Tensor t) {
  Value* v = graph_.add_value("constant");
  v->dtype = t.dtype();
  v->shape = t.shape();
  v->shape_known = true;
  v->constant = std::move(t);
  return v;
}

Value* OpChain::add(const std::string& op_type, const std::vector<Value*>& inputs,
                    const std::map<std::string, Attribute>& attrs, int opset) {
  Value* out = graph_.add_value(op_type);
  const std::string name = fused_.name + "/" + op_type + std::to_string(kernels_.size());
  Node* node = graph_.add_node(op_type, name, inputs, {out});
  node->attrs = attrs;
  node->opset = opset;
  const KernelFactory* factory = reference_backend().kernels().find("", op_type);
  TANDEM_CHECK(factory, ErrorCode::kInternal, "{}: no reference kernel for {}", fused_.describe(),
               op_type);
  kernels_.push_back((*factory)(*node));
  TANDEM_CHECK(kernels_.back(), ErrorCode::kInternal, "{}: the reference {} declined it",
               fused_.describe(), op_type);
  return out;
}

void OpChain::run(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                  Tensor& out) const {
  std::map<const Value*, Tensor> computed;
  auto tensor_of = [&](const Value* v) -> const Tensor* {
    if (!v) return nullptr;
    if (v->is_constant()) return &*v->constant;
    for (auto& [i, in] : inputs_)
      if (in == v) return i < inputs.size() ? inputs[i] : nullptr;
    auto it = computed.find(v);
    return it == computed.end() ? nullptr : &it->second;
  };
  const auto& nodes = graph_.nodes();
  TANDEM_CHECK(!nodes.empty(), ErrorCode::kInternal, "{}: empty op chain", fused_.describe());
  const Tensor* result = nullptr;
  for (size_t n = 0; n < nodes.size(); ++n) {
    const Node& node = *nodes[n];
    std::vector<const Tensor*> ins;
    std::vector<TensorType> types(node.inputs.size());
    std::vector<const TensorType*> type_ptrs;
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const Tensor* t = tensor_of(node.inputs[i]);
      TANDEM_CHECK(t || !node.inputs[i], ErrorCode::kInternal, "{}: {} is missing an input",
                   fused_.describe(), node.describe());
      ins.push_back(t);
      if (t) types[i] = {t->dtype(), t->shape()};
      type_ptrs.push_back(t ? &types[i] : nullptr);
    }
    std::vector<TensorType> out_types = infer_node(node, type_ptrs, ins);
    Tensor& y = computed[node.outputs[0]] = Tensor(out_types.at(0).dtype, out_types[0].shape);
    Tensor* outs[] = {&y};
    KernelContext step{node, ctx.pool};
    kernels_[n]->compute(step, ins, outs);
    result = &y;
  }
  TANDEM_CHECK(result->dtype() == out.dtype() && result->shape() == out.shape(),
               ErrorCode::kInternal, "{}: the op chain gives {} {}, the output is {} {}",
               fused_.describe(), dtype_name(result->dtype()), shape_str(result->shape()),
               dtype_name(out.dtype()), shape_str(out.shape()));
  std::memcpy(out.raw(), result->raw(), out.nbytes());
}

}  // namespace tandem

#include "backends/ref/evaluate.h"

#include "backends/backend.h"
#include "core/checked.h"
#include "core/error.h"
#include "ops/schema.h"
#include "backends/ref/ref_backend.h"

namespace tandem {

namespace {
std::vector<TensorType> infer_from_values(const Node& node, std::span<const Tensor* const> inputs) {
  std::vector<TensorType> types(inputs.size());
  std::vector<const TensorType*> type_ptrs(inputs.size(), nullptr);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i]) continue;
    types[i] = {inputs[i]->dtype(), inputs[i]->shape()};
    type_ptrs[i] = &types[i];
  }
  return infer_node(node, type_ptrs, inputs);
}

std::vector<Tensor> run_reference(const Node& node, std::span<const Tensor* const> inputs,
                                  const std::vector<TensorType>& out_types) {
  std::vector<Tensor> outputs;
  std::vector<Tensor*> out_ptrs;
  outputs.reserve(out_types.size());
  for (size_t i = 0; i < out_types.size(); ++i) {
    // Omitted outputs get no storage (their shapes were not checked).
    outputs.push_back(node.outputs[i] ? Tensor(out_types[i].dtype, out_types[i].shape) : Tensor());
    out_ptrs.push_back(node.outputs[i] ? &outputs.back() : nullptr);
  }
  const KernelFactory* factory = reference_backend().kernels().find(node.domain, node.op_type);
  TANDEM_CHECK(factory, ErrorCode::kUnsupported, "{}: no reference kernel", node.describe());
  auto kernel = (*factory)(node);
  static ThreadPool single_thread(1);
  KernelContext ctx{node, single_thread};
  kernel->compute(ctx, inputs, out_ptrs);
  return outputs;
}
}  // namespace

std::vector<Tensor> evaluate_on_reference(const Node& node, std::span<const Tensor* const> inputs) {
  return run_reference(node, inputs, infer_from_values(node, inputs));
}

std::optional<std::vector<Tensor>> fold_on_reference(const Node& node,
                                                     std::span<const Tensor* const> inputs,
                                                     FoldBudget& budget) {
  std::vector<TensorType> out_types = infer_from_values(node, inputs);
  size_t in_bytes = 0, out_bytes = 0;
  for (const Tensor* t : inputs)
    if (t) in_bytes += t->nbytes();  // constants already held to the caps: no wrap
  for (size_t i = 0; i < out_types.size(); ++i) {
    if (!node.outputs[i]) continue;
    size_t b = checked_nbytes(out_types[i].dtype, out_types[i].shape, node.describe());
    if (__builtin_add_overflow(out_bytes, b, &out_bytes)) return std::nullopt;
  }
  if (!budget.admit(in_bytes, out_bytes)) return std::nullopt;
  return run_reference(node, inputs, out_types);
}

void check_output_sizes(const Node& node, std::span<const TensorType> types,
                        size_t max_tensor_bytes) {
  for (size_t i = 0; i < types.size() && i < node.outputs.size(); ++i) {
    if (!node.outputs[i]) continue;
    size_t bytes = checked_nbytes(types[i].dtype, types[i].shape, node.describe());
    check_tensor_cap(bytes, max_tensor_bytes,
                     fmt::format("{}: output '{}'", node.describe(), node.outputs[i]->name),
                     types[i].shape);
  }
}

}  // namespace tandem

#include "runtime/evaluate.h"

#include "backends/backend.h"
#include "core/error.h"
#include "ops/schema.h"

namespace tandem {

std::vector<Tensor> evaluate_on_reference(const Node& node,
                                          std::span<const Tensor* const> inputs) {
  std::vector<TensorType> types(inputs.size());
  std::vector<const TensorType*> type_ptrs(inputs.size(), nullptr);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i]) continue;
    types[i] = {inputs[i]->dtype(), inputs[i]->shape()};
    type_ptrs[i] = &types[i];
  }
  std::vector<TensorType> out_types = infer_node(node, type_ptrs, inputs);
  std::vector<Tensor> outputs;
  std::vector<Tensor*> out_ptrs;
  outputs.reserve(out_types.size());
  for (size_t i = 0; i < out_types.size(); ++i) {
    outputs.emplace_back(out_types[i].dtype, out_types[i].shape);
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

}  // namespace tandem

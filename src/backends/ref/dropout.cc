// Reference kernel of Dropout. At inference Dropout is the identity and its mask all true. In
// training mode (opset >= 12: the training_mode input; opset < 7: is_test = 0, the default)
// elements are dropped at random, which only ratio = 0 makes deterministic: anything else is
// refused rather than computed differently from the model's intent.
#include "ops/dropout.h"

#include <cstring>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/value_io.h"
#include "core/error.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

void dropout_kernel(const KernelContext& ctx, const DropoutAttrs& attrs,
                    std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  double ratio = attrs.ratio;
  bool training = attrs.training;
  if (node.opset >= 12) {
    if (inputs.size() > 1 && inputs[1]) ratio = tensor_scalar_as_double(*inputs[1], node);
    if (inputs.size() > 2 && inputs[2]) training = tensor_scalar_as_double(*inputs[2], node) != 0;
  }
  TANDEM_CHECK(ratio >= 0 && ratio < 1, ErrorCode::kInvalidArgument,
               "{}: ratio {} is outside [0, 1)", node.describe(), ratio);
  TANDEM_CHECK(!training || ratio == 0, ErrorCode::kUnsupported,
               "{}: training-mode dropout with ratio {} is random and not supported",
               node.describe(), ratio);
  // With ratio 0 the training-mode scale 1 / (1 - ratio) is 1: a plain copy either way.
  std::memcpy(outputs[0]->raw(), x.raw(), x.nbytes());
  if (outputs.size() > 1 && outputs[1]) {
    write_doubles(*outputs[1], std::vector<double>(static_cast<size_t>(x.numel()), 1.0), node);
  }
}

}  // namespace

void register_dropout_ref_kernels(KernelRegistry& r) {
  r.add("Dropout", dropout_kernel);
}

}  // namespace tandem

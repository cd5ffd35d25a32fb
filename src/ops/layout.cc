// Schemas of the channels-last ops (kFusedDomain; see ops/layout.h):
//
// - ToChannelsLast:  X [N, C, H, W] -> Y [N, H, W, C]  (Y[n, h, w, c] = X[n, c, h, w])
// - ToChannelsFirst: X [N, H, W, C] -> Y [N, C, H, W]
// - MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool with channels_last = 1: the ONNX op of
//   the same name (same attributes) on NHWC input and output. MaxPool has no Indices output here.
// - BatchNormalization with channels_last = 1: inference BatchNormalization on NHWC X and Y (the
//   parameters stay one value per channel); no statistics outputs. It may carry a fused
//   activation (activation, activation_params as in ops/fused_activation.h: DenseNet's BN + Relu
//   in one pass over the data). Inputs after the five parameters' places are more parts of X:
//   BatchNormalization(X0, scale, B, mean, var, X1, ..., Xk) normalises Concat(X0, X1, ..., Xk)
//   along the channels (the last axis), so a Concat read only by the BN is never written out
//   (DenseNet's dense layers). Every part has X0's N, H, W; the parameters have one value per
//   channel of the whole.
#include "ops/layout.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/checked.h"
#include "core/error.h"
#include "ops/fused_activation.h"
#include "ops/schema.h"

namespace tandem {

namespace {

const TensorType& rank4_input(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(x.shape.size() == 4, ErrorCode::kInvalidModel, "{}: X must have rank 4, got {}",
               ctx.node.describe(), shape_str(x.shape));
  return x;
}

std::vector<TensorType> infer_to_channels_last(const InferContext& ctx) {
  const TensorType& x = rank4_input(ctx);
  return {{x.dtype, nchw_to_nhwc(x.shape)}};
}

std::vector<TensorType> infer_to_channels_first(const InferContext& ctx) {
  const TensorType& x = rank4_input(ctx);
  return {{x.dtype, nhwc_to_nchw(x.shape)}};
}

// The ONNX op's inference on the NCHW view of input 0 (the other inputs as they are: the
// BatchNormalization parameters), outputs turned back to NHWC.
std::vector<TensorType> infer_channels_last_onnx(const InferContext& ctx) {
  const Node& node = ctx.node;
  TANDEM_CHECK(is_channels_last(node), ErrorCode::kInvalidModel,
               "{}: the {} domain's {} needs channels_last = 1", node.describe(), kFusedDomain,
               node.op_type);
  TANDEM_CHECK(node.outputs.size() == 1, ErrorCode::kInvalidModel,
               "{}: a channels-last {} has one output", node.describe(), node.op_type);
  const TensorType& x = rank4_input(ctx);
  const TensorType nchw{x.dtype, nhwc_to_nchw(x.shape)};
  std::vector<const TensorType*> types{&nchw};
  std::vector<const Tensor*> values{nullptr};
  for (size_t i = 1; i < ctx.num_inputs(); ++i) {
    types.push_back(ctx.has_input(i) ? &ctx.input(i) : nullptr);
    values.push_back(ctx.value(i));
  }
  InferContext onnx_ctx(node, types, values);
  std::vector<TensorType> out = schemas().find("", node.op_type)->infer(onnx_ctx);
  out.resize(1);
  out[0].shape = nchw_to_nhwc(out[0].shape);
  return out;
}

// The channels-last BatchNormalization: its fused activation is checked, the parts of X are
// joined along the channels, then the ONNX op's inference on the whole.
std::vector<TensorType> infer_channels_last_batch_norm(const InferContext& ctx) {
  const Node& node = ctx.node;
  read_fused_activation(node);
  if (ctx.num_inputs() <= 5) return infer_channels_last_onnx(ctx);
  TensorType whole = rank4_input(ctx);
  for (size_t i = 5; i < ctx.num_inputs(); ++i) {
    const TensorType& part = ctx.input(i);
    const bool fits = part.dtype == whole.dtype && part.shape.size() == 4 &&
                      std::equal(part.shape.begin(), part.shape.begin() + 3, whole.shape.begin());
    TANDEM_CHECK(fits, ErrorCode::kInvalidModel,
                 "{}: part {} of X is {} {} but X's first part is {} {} (the parts may differ "
                 "only in the last axis, the channels)",
                 node.describe(), i - 4, dtype_name(part.dtype), shape_str(part.shape),
                 dtype_name(whole.dtype), shape_str(rank4_input(ctx).shape));
    whole.shape[3] =
        checked_add(whole.shape[3], part.shape[3], node.describe() + ": channels of X");
  }
  std::vector<const TensorType*> types{&whole};
  std::vector<const Tensor*> values{nullptr};
  for (size_t i = 1; i < 5; ++i) {
    types.push_back(ctx.has_input(i) ? &ctx.input(i) : nullptr);
    values.push_back(ctx.value(i));
  }
  return infer_channels_last_onnx(InferContext(node, types, values));
}

}  // namespace

void register_layout_schemas(SchemaRegistry& r) {
  r.add({"ToChannelsLast", 1, 1, infer_to_channels_last, kFusedDomain});
  r.add({"ToChannelsFirst", 1, 1, infer_to_channels_first, kFusedDomain});
  for (const char* op : {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
    r.add({op, 1, 1, infer_channels_last_onnx, kFusedDomain});
  r.add({"BatchNormalization", 5, -1, infer_channels_last_batch_norm, kFusedDomain});
}

}  // namespace tandem

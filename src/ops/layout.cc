// Schemas of the channels-last ops (kFusedDomain; see ops/layout.h):
//
// - ToChannelsLast:  X [N, C, H, W] -> Y [N, H, W, C]  (Y[n, h, w, c] = X[n, c, h, w])
// - ToChannelsFirst: X [N, H, W, C] -> Y [N, C, H, W]
// - MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool with channels_last = 1: the ONNX op of
//   the same name (same attributes) on NHWC input and output. MaxPool has no Indices output here.
// - BatchNormalization with channels_last = 1: inference BatchNormalization on NHWC X and Y (the
//   parameters stay one value per channel); no statistics outputs.
#include "ops/layout.h"

#include <string>
#include <vector>

#include "core/error.h"
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

}  // namespace

void register_layout_schemas(SchemaRegistry& r) {
  r.add({"ToChannelsLast", 1, 1, infer_to_channels_last, kFusedDomain});
  r.add({"ToChannelsFirst", 1, 1, infer_to_channels_first, kFusedDomain});
  for (const char* op : {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
    r.add({op, 1, 1, infer_channels_last_onnx, kFusedDomain});
  r.add({"BatchNormalization", 5, 5, infer_channels_last_onnx, kFusedDomain});
}

}  // namespace tandem

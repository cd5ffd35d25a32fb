// Schemas of the loss family: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
// Input [N, C, d1..dk] (float), target [N, d1..dk] (int32/int64), optional weight [C].
// reduction "none" gives the target's shape, "sum"/"mean" a scalar.
#include "ops/loss.h"

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

LossAttrs LossAttrs::parse(const Node& node) {
  LossAttrs a;
  a.reduction = node.attr_string_or("reduction", "mean");
  TANDEM_CHECK(a.reduction == "none" || a.reduction == "sum" || a.reduction == "mean",
               ErrorCode::kInvalidModel, "{}: unknown reduction '{}'", node.describe(),
               a.reduction);
  if (node.has_attr("ignore_index")) a.ignore_index = node.attr_int("ignore_index");
  return a;
}

namespace {

std::vector<TensorType> infer_loss(const InferContext& ctx, const LossAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.float_input(0);
  const TensorType& t = ctx.input(1);
  TANDEM_CHECK(t.dtype == DataType::kInt32 || t.dtype == DataType::kInt64, ErrorCode::kInvalidModel,
               "{}: target dtype {} must be int32 or int64", node.describe(), dtype_name(t.dtype));
  TANDEM_CHECK(x.shape.size() >= 2, ErrorCode::kInvalidArgument,
               "{}: input shape {} must be [N, C, d1, ...]", node.describe(), shape_str(x.shape));
  Shape want = x.shape;
  want.erase(want.begin() + 1);
  TANDEM_CHECK(t.shape == want, ErrorCode::kInvalidArgument,
               "{}: target shape {} does not match input shape {} (expected {})", node.describe(),
               shape_str(t.shape), shape_str(x.shape), shape_str(want));
  if (ctx.has_input(2)) {
    const TensorType& w = ctx.input(2);
    TANDEM_CHECK(w.dtype == x.dtype && w.shape == Shape{x.shape[1]}, ErrorCode::kInvalidArgument,
                 "{}: weight must be {} of shape [{}], got {} {}", node.describe(),
                 dtype_name(x.dtype), x.shape[1], dtype_name(w.dtype), shape_str(w.shape));
  }
  std::vector<TensorType> out = {{x.dtype, a.reduction == "none" ? t.shape : Shape{}}};
  // SoftmaxCrossEntropyLoss's optional second output: the log-probabilities.
  if (node.op_type == "SoftmaxCrossEntropyLoss") out.push_back({x.dtype, x.shape});
  return out;
}

}  // namespace

void register_loss_schemas(SchemaRegistry& r) {
  r.add({"NegativeLogLikelihoodLoss", 2, 3, with_attrs(infer_loss), ""});
  r.add({"SoftmaxCrossEntropyLoss", 2, 3, with_attrs(infer_loss), ""});
}

}  // namespace tandem

// Schemas of the softmax family: Softmax, LogSoftmax, Hardmax. The output has the input's
// dtype and shape; only the axis is checked here.
#include <algorithm>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

std::vector<TensorType> infer_softmax(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(x.dtype == DataType::kFloat32 || x.dtype == DataType::kFloat64 ||
                   x.dtype == DataType::kFloat16,
               ErrorCode::kUnsupported, "{}: dtype {} is not supported (float types only)",
               node.describe(), dtype_name(x.dtype));
  int64_t rank = static_cast<int64_t>(x.shape.size());
  // Opset 13 changed the default axis (1 -> -1) and the meaning (coerce to 2-D -> one axis).
  int64_t axis = node.attr_int_or("axis", node.opset >= 13 ? -1 : 1);
  normalize_axis(axis, std::max<int64_t>(rank, 1), node);
  return {{x.dtype, x.shape}};
}

}  // namespace

void register_softmax_schemas(SchemaRegistry& r) {
  r.add({"Softmax", 1, 1, infer_softmax, ""});
  r.add({"LogSoftmax", 1, 1, infer_softmax, ""});
  r.add({"Hardmax", 1, 1, infer_softmax, ""});
}

}  // namespace tandem

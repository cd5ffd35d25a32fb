// Schemas of the softmax family: Softmax, LogSoftmax, Hardmax. The output has the input's
// dtype and shape; only the axis is checked here.
#include "ops/softmax.h"

#include <algorithm>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

SoftmaxAttrs SoftmaxAttrs::parse(const Node& node) {
  SoftmaxAttrs a;
  // Opset 13 changed the default axis (1 -> -1) and the meaning (coerce to 2-D -> one axis).
  a.coerce_to_2d = node.opset < 13;
  a.axis = node.attr_int_or("axis", a.coerce_to_2d ? 1 : -1);
  return a;
}

SoftmaxRows SoftmaxAttrs::rows(const Shape& shape, const Node& node) const {
  const int64_t rank = static_cast<int64_t>(shape.size());
  SoftmaxRows r;
  r.axis = normalize_axis(axis, std::max<int64_t>(rank, 1), node);
  if (rank == 0) return r;
  for (int64_t d = 0; d < r.axis; ++d) r.outer *= shape[d];
  const int64_t row_end = coerce_to_2d ? rank : r.axis + 1;
  for (int64_t d = r.axis; d < row_end; ++d) r.n *= shape[d];
  for (int64_t d = row_end; d < rank; ++d) r.inner *= shape[d];
  return r;
}

namespace {

std::vector<TensorType> infer_softmax(const InferContext& ctx, const SoftmaxAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.float_input(0);
  a.rows(x.shape, node);  // checks the axis
  return {{x.dtype, x.shape}};
}

}  // namespace

void register_softmax_schemas(SchemaRegistry& r) {
  r.add({"Softmax", 1, 1, with_attrs(infer_softmax), ""});
  r.add({"LogSoftmax", 1, 1, with_attrs(infer_softmax), ""});
  r.add({"Hardmax", 1, 1, with_attrs(infer_softmax), ""});
}

}  // namespace tandem

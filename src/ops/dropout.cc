// Schema of Dropout: output 0 has the input's dtype and shape; the optional mask (output 1) is
// bool from opset 10 and the input's dtype before.
#include "core/error.h"
#include "ops/schema.h"

namespace tandem {

namespace {

std::vector<TensorType> infer_dropout(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.float_input(0, /*bfloat16=*/true);
  TANDEM_CHECK(node.opset >= 12 || node.inputs.size() == 1, ErrorCode::kInvalidModel,
               "{}: ratio and training_mode are inputs only from opset 12 (opset {})",
               node.describe(), node.opset);
  return {{x.dtype, x.shape}, {node.opset >= 10 ? DataType::kBool : x.dtype, x.shape}};
}

}  // namespace

void register_dropout_schemas(SchemaRegistry& r) {
  r.add({"Dropout", 1, 3, infer_dropout, ""});
}

}  // namespace tandem

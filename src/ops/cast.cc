// Schemas of the cast family: Cast (target dtype from the `to` attribute) and CastLike (target
// dtype from input 1). Same shape as the input. Strings are not supported.
#include <vector>

#include "core/error.h"
#include "ops/schema.h"

namespace tandem {
namespace {

// Rejects what the cast kernels cannot convert: strings and dtypes Tandem has no storage for.
void check_castable(const InferContext& ctx, DataType d, const char* role) {
  TANDEM_CHECK(d != DataType::kString, ErrorCode::kUnsupported,
               "{}: casting {} a string tensor is not supported", ctx.node.describe(), role);
  TANDEM_CHECK(dtype_size(d) > 0, ErrorCode::kUnsupported, "{}: cannot cast {} dtype {}",
               ctx.node.describe(), role, static_cast<int>(d));
}

}  // namespace

void register_cast_schemas(SchemaRegistry& r) {
  r.add({"Cast", 1, 1, [](const InferContext& ctx) {
           const TensorType& x = ctx.input(0);
           const auto to = static_cast<DataType>(ctx.node.attr_int("to"));
           check_castable(ctx, x.dtype, "from");
           check_castable(ctx, to, "to");
           return std::vector<TensorType>{{to, x.shape}};
         }});
  r.add({"CastLike", 2, 2, [](const InferContext& ctx) {
           const TensorType& x = ctx.input(0);
           const DataType to = ctx.input(1).dtype;
           check_castable(ctx, x.dtype, "from");
           check_castable(ctx, to, "to");
           return std::vector<TensorType>{{to, x.shape}};
         }});
}

}  // namespace tandem

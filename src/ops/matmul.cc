// Schemas of the matmul family: MatMul (numpy matmul semantics) and Gemm.
#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

bool matmul_dtype_ok(DataType t) {
  switch (t) {
    case DataType::kFloat32:
    case DataType::kFloat64:
    case DataType::kFloat16:
    case DataType::kInt32:
    case DataType::kInt64:
    case DataType::kUInt32:
    case DataType::kUInt64:
      return true;
    default:
      return false;
  }
}

std::vector<TensorType> infer_matmul(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& a = ctx.input(0);
  const TensorType& b = ctx.input(1);
  TANDEM_CHECK(a.dtype == b.dtype, ErrorCode::kInvalidModel, "{}: input dtypes differ ({} vs {})",
               node.describe(), dtype_name(a.dtype), dtype_name(b.dtype));
  TANDEM_CHECK(matmul_dtype_ok(a.dtype), ErrorCode::kUnsupported, "{}: dtype {} is not supported",
               node.describe(), dtype_name(a.dtype));
  TANDEM_CHECK(!a.shape.empty() && !b.shape.empty(), ErrorCode::kInvalidModel,
               "{}: operands must have rank >= 1, got {} and {}", node.describe(),
               shape_str(a.shape), shape_str(b.shape));
  // numpy: a 1-D A is a row vector [1,K], a 1-D B a column vector [K,1]; the added dim is
  // dropped from the result again.
  Shape sa = a.shape, sb = b.shape;
  if (sa.size() == 1) sa.insert(sa.begin(), 1);
  if (sb.size() == 1) sb.push_back(1);
  int64_t m = sa[sa.size() - 2], k = sa.back();
  int64_t kb = sb[sb.size() - 2], n = sb.back();
  TANDEM_CHECK(k == kb, ErrorCode::kInvalidArgument,
               "{}: inner dimensions do not match: A is {}, B is {}", node.describe(),
               shape_str(a.shape), shape_str(b.shape));
  Shape batch_a(sa.begin(), sa.end() - 2), batch_b(sb.begin(), sb.end() - 2);
  Shape out = broadcast_shapes(batch_a, batch_b, node);
  if (a.shape.size() > 1) out.push_back(m);
  if (b.shape.size() > 1) out.push_back(n);
  return {{a.dtype, out}};
}

std::vector<TensorType> infer_gemm(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& a = ctx.input(0);
  const TensorType& b = ctx.input(1);
  TANDEM_CHECK(a.dtype == b.dtype, ErrorCode::kInvalidModel, "{}: input dtypes differ ({} vs {})",
               node.describe(), dtype_name(a.dtype), dtype_name(b.dtype));
  TANDEM_CHECK(matmul_dtype_ok(a.dtype), ErrorCode::kUnsupported, "{}: dtype {} is not supported",
               node.describe(), dtype_name(a.dtype));
  TANDEM_CHECK(a.shape.size() == 2 && b.shape.size() == 2, ErrorCode::kInvalidModel,
               "{}: A and B must be 2-D, got {} and {}", node.describe(), shape_str(a.shape),
               shape_str(b.shape));
  bool ta = node.attr_int_or("transA", 0) != 0;
  bool tb = node.attr_int_or("transB", 0) != 0;
  int64_t m = ta ? a.shape[1] : a.shape[0];
  int64_t k = ta ? a.shape[0] : a.shape[1];
  int64_t kb = tb ? b.shape[1] : b.shape[0];
  int64_t n = tb ? b.shape[0] : b.shape[1];
  TANDEM_CHECK(k == kb, ErrorCode::kInvalidArgument,
               "{}: inner dimensions do not match: A {} (transA={}), B {} (transB={})",
               node.describe(), shape_str(a.shape), ta, shape_str(b.shape), tb);
  Shape out{m, n};
  if (ctx.has_input(2)) {
    const TensorType& c = ctx.input(2);
    TANDEM_CHECK(c.dtype == a.dtype, ErrorCode::kInvalidModel, "{}: C has dtype {}, expected {}",
                 node.describe(), dtype_name(c.dtype), dtype_name(a.dtype));
    // C broadcasts unidirectionally to [M, N].
    TANDEM_CHECK(c.shape.size() <= 2 && broadcast_shapes(c.shape, out, node) == out,
                 ErrorCode::kInvalidArgument, "{}: C of shape {} cannot be broadcast to {}",
                 node.describe(), shape_str(c.shape), shape_str(out));
  }
  return {{a.dtype, out}};
}

}  // namespace

void register_matmul_schemas(SchemaRegistry& r) {
  r.add({"MatMul", 2, 2, infer_matmul, ""});
  r.add({"Gemm", 2, 3, infer_gemm, ""});
}

}  // namespace tandem

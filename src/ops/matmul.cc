// Schemas of the matmul family: MatMul (numpy matmul semantics), Gemm, and the fused ops
// (com.tandem) the fusion passes make: Attention (MatMul -> scale -> mask -> Softmax -> MatMul)
// and FusedMatMul (MatMul + bias + residual).
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

// MatMul's output shape (numpy matmul: 1-D operands, broadcast batch dims).
Shape matmul_shape(const Shape& as, const Shape& bs, const Node& node) {
  TANDEM_CHECK(!as.empty() && !bs.empty(), ErrorCode::kInvalidModel,
               "{}: operands must have rank >= 1, got {} and {}", node.describe(), shape_str(as),
               shape_str(bs));
  // numpy: a 1-D A is a row vector [1,K], a 1-D B a column vector [K,1]; the added dim is
  // dropped from the result again.
  Shape sa = as, sb = bs;
  if (sa.size() == 1) sa.insert(sa.begin(), 1);
  if (sb.size() == 1) sb.push_back(1);
  int64_t m = sa[sa.size() - 2], k = sa.back();
  int64_t kb = sb[sb.size() - 2], n = sb.back();
  TANDEM_CHECK(k == kb, ErrorCode::kInvalidArgument,
               "{}: inner dimensions do not match: A is {}, B is {}", node.describe(),
               shape_str(as), shape_str(bs));
  Shape batch_a(sa.begin(), sa.end() - 2), batch_b(sb.begin(), sb.end() - 2);
  Shape out = broadcast_shapes(batch_a, batch_b, node);
  if (as.size() > 1) out.push_back(m);
  if (bs.size() > 1) out.push_back(n);
  return out;
}

std::vector<TensorType> infer_matmul(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& a = ctx.input(0);
  const TensorType& b = ctx.input(1);
  TANDEM_CHECK(a.dtype == b.dtype, ErrorCode::kInvalidModel, "{}: input dtypes differ ({} vs {})",
               node.describe(), dtype_name(a.dtype), dtype_name(b.dtype));
  TANDEM_CHECK(matmul_dtype_ok(a.dtype), ErrorCode::kUnsupported, "{}: dtype {} is not supported",
               node.describe(), dtype_name(a.dtype));
  return {{a.dtype, matmul_shape(a.shape, b.shape, node)}};
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

// `s` permuted by the Attention attribute `key` (absent or empty: unchanged), as Transpose would.
Shape permuted(const Shape& s, const Node& node, const char* key) {
  const std::vector<int64_t> perm = node.attr_ints_or(key, {});
  if (perm.empty()) return s;
  const int64_t rank = static_cast<int64_t>(s.size());
  TANDEM_CHECK(static_cast<int64_t>(perm.size()) == rank, ErrorCode::kInvalidArgument,
               "{}: {} {} does not match an operand of rank {}", node.describe(), key,
               fmt::format("{}", perm), rank);
  std::vector<bool> seen(s.size(), false);
  Shape out;
  for (int64_t p : perm) {
    TANDEM_CHECK(p >= 0 && p < rank && !seen[static_cast<size_t>(p)], ErrorCode::kInvalidModel,
                 "{}: {} {} is not a permutation of 0..{}", node.describe(), key,
                 fmt::format("{}", perm), rank - 1);
    seen[static_cast<size_t>(p)] = true;
    out.push_back(s[static_cast<size_t>(p)]);
  }
  return out;
}

// Attention(Q, K, V, mask?, keep?), attributes scale, fill, q_perm, k_perm, v_perm, out_perm:
// exactly the ops it replaces,
//   S = MatMul(Transpose(Q, q_perm), Transpose(K, k_perm)) * scale  (K is MatMul's right operand,
//                                                                    i.e. already "K^T")
//   S = S + mask;  S = Where(keep, S, fill);  P = Softmax(S, axis -1)
//   Y = Transpose(MatMul(P, Transpose(V, v_perm)), out_perm)
// with each optional piece left out when absent (a perm absent or empty: no Transpose).
std::vector<TensorType> infer_attention(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& q = ctx.input(0);
  for (size_t i = 1; i < 4; ++i) {
    if (!ctx.has_input(i)) continue;
    TANDEM_CHECK(ctx.input(i).dtype == q.dtype, ErrorCode::kInvalidModel,
                 "{}: input {} has dtype {}, Q has {}", node.describe(), i,
                 dtype_name(ctx.input(i).dtype), dtype_name(q.dtype));
  }
  TANDEM_CHECK(q.dtype == DataType::kFloat32 || q.dtype == DataType::kFloat64,
               ErrorCode::kUnsupported, "{}: dtype {} is not supported (float32/float64 only)",
               node.describe(), dtype_name(q.dtype));
  Shape s = matmul_shape(permuted(q.shape, node, "q_perm"),
                         permuted(ctx.input(1).shape, node, "k_perm"), node);
  if (ctx.has_input(3)) s = broadcast_shapes(s, ctx.input(3).shape, node);
  if (ctx.has_input(4)) {
    TANDEM_CHECK(ctx.input(4).dtype == DataType::kBool, ErrorCode::kInvalidModel,
                 "{}: keep has dtype {}, expected bool", node.describe(),
                 dtype_name(ctx.input(4).dtype));
    s = broadcast_shapes(s, ctx.input(4).shape, node);
  }
  TANDEM_CHECK(!s.empty(), ErrorCode::kInvalidModel, "{}: the scores are a scalar",
               node.describe());
  Shape y = matmul_shape(s, permuted(ctx.input(2).shape, node, "v_perm"), node);
  return {{q.dtype, permuted(y, node, "out_perm")}};
}

// FusedMatMul(A, B, bias?, residual?) (com.tandem, fuse_matmul_bias.cc): exactly
// Add(Add(MatMul(A, B), bias), residual), each Add broadcasting numpy-style, each left out when
// its input is absent.
std::vector<TensorType> infer_fused_matmul(const InferContext& ctx) {
  std::vector<TensorType> out = infer_matmul(ctx);
  for (size_t i = 2; i < 4; ++i) {
    if (!ctx.has_input(i)) continue;
    TANDEM_CHECK(ctx.input(i).dtype == out[0].dtype, ErrorCode::kInvalidModel,
                 "{}: input {} has dtype {}, expected {}", ctx.node.describe(), i,
                 dtype_name(ctx.input(i).dtype), dtype_name(out[0].dtype));
    out[0].shape = broadcast_shapes(out[0].shape, ctx.input(i).shape, ctx.node);
  }
  return out;
}

}  // namespace

void register_matmul_schemas(SchemaRegistry& r) {
  r.add({"MatMul", 2, 2, infer_matmul, ""});
  r.add({"Gemm", 2, 3, infer_gemm, ""});
  r.add({"Attention", 3, 5, infer_attention, kFusedDomain});
  r.add({"FusedMatMul", 2, 4, infer_fused_matmul, kFusedDomain});
}

}  // namespace tandem

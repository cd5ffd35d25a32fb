// Schemas of the matmul family: MatMul (numpy matmul semantics), Gemm, and the fused ops
// (com.tandem) the fusion passes make: Attention (MatMul -> scale -> mask -> Softmax -> MatMul)
// and FusedMatMul (MatMul + bias + residual).
#include "ops/matmul.h"

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

GemmAttrs GemmAttrs::parse(const Node& node) {
  GemmAttrs g;
  g.trans_a = node.attr_int_or("transA", 0) != 0;
  g.trans_b = node.attr_int_or("transB", 0) != 0;
  g.alpha = node.attr_float_or("alpha", 1.0f);
  g.beta = node.attr_float_or("beta", 1.0f);
  return g;
}

AttentionAttrs AttentionAttrs::parse(const Node& node) {
  AttentionAttrs a;
  a.q_perm = node.attr_ints_or("q_perm", {});
  a.k_perm = node.attr_ints_or("k_perm", {});
  a.v_perm = node.attr_ints_or("v_perm", {});
  a.out_perm = node.attr_ints_or("out_perm", {});
  a.scale = node.attr_float_or("scale", 1.0f);
  a.fill = node.attr_float_or("fill", 0.0f);
  return a;
}

GemmDims GemmAttrs::dims(const Shape& a, const Shape& b, const Node& node) const {
  TANDEM_CHECK(a.size() == 2 && b.size() == 2, ErrorCode::kInvalidModel,
               "{}: A and B must be 2-D, got {} and {}", node.describe(), shape_str(a),
               shape_str(b));
  GemmDims d;
  d.m = trans_a ? a[1] : a[0];
  d.k = trans_a ? a[0] : a[1];
  d.n = trans_b ? b[0] : b[1];
  const int64_t kb = trans_b ? b[1] : b[0];
  TANDEM_CHECK(d.k == kb, ErrorCode::kInvalidArgument,
               "{}: inner dimensions do not match: A {} (transA={}), B {} (transB={})",
               node.describe(), shape_str(a), trans_a, shape_str(b), trans_b);
  return d;
}

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

// A and B of MatMul and Gemm: one dtype, one the kernels take.
void check_operand_dtypes(const Node& node, const TensorType& a, const TensorType& b) {
  TANDEM_CHECK(a.dtype == b.dtype, ErrorCode::kInvalidModel, "{}: input dtypes differ ({} vs {})",
               node.describe(), dtype_name(a.dtype), dtype_name(b.dtype));
  TANDEM_CHECK(matmul_dtype_ok(a.dtype), ErrorCode::kUnsupported, "{}: dtype {} is not supported",
               node.describe(), dtype_name(a.dtype));
}

std::vector<TensorType> infer_matmul(const InferContext& ctx) {
  const TensorType& a = ctx.input(0);
  const TensorType& b = ctx.input(1);
  check_operand_dtypes(ctx.node, a, b);
  return {{a.dtype, matmul_shape(a.shape, b.shape, ctx.node)}};
}

std::vector<TensorType> infer_gemm(const InferContext& ctx, const GemmAttrs& g) {
  const Node& node = ctx.node;
  const TensorType& a = ctx.input(0);
  const TensorType& b = ctx.input(1);
  check_operand_dtypes(node, a, b);
  const GemmDims d = g.dims(a.shape, b.shape, node);
  Shape out{d.m, d.n};
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

// Attention(Q, K, V, mask?, keep?), attributes scale, fill, q_perm, k_perm, v_perm, out_perm:
// exactly the ops it replaces,
//   S = MatMul(Transpose(Q, q_perm), Transpose(K, k_perm)) * scale  (K is MatMul's right operand,
//                                                                    i.e. already "K^T")
//   S = S + mask;  S = Where(keep, S, fill);  P = Softmax(S, axis -1)
//   Y = Transpose(MatMul(P, Transpose(V, v_perm)), out_perm)
// with each optional piece left out when absent (a perm absent or empty: no Transpose).
std::vector<TensorType> infer_attention(const InferContext& ctx, const AttentionAttrs& a) {
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
  Shape s = matmul_shape(permuted(q.shape, a.q_perm, node, "q_perm"),
                         permuted(ctx.input(1).shape, a.k_perm, node, "k_perm"), node);
  if (ctx.has_input(3)) s = broadcast_shapes(s, ctx.input(3).shape, node);
  if (ctx.has_input(4)) {
    TANDEM_CHECK(ctx.input(4).dtype == DataType::kBool, ErrorCode::kInvalidModel,
                 "{}: keep has dtype {}, expected bool", node.describe(),
                 dtype_name(ctx.input(4).dtype));
    s = broadcast_shapes(s, ctx.input(4).shape, node);
  }
  TANDEM_CHECK(!s.empty(), ErrorCode::kInvalidModel, "{}: the scores are a scalar",
               node.describe());
  Shape y = matmul_shape(s, permuted(ctx.input(2).shape, a.v_perm, node, "v_perm"), node);
  return {{q.dtype, permuted(y, a.out_perm, node, "out_perm")}};
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
  r.add({"Gemm", 2, 3, with_attrs(infer_gemm), ""});
  r.add({"Attention", 3, 5, with_attrs(infer_attention), kFusedDomain});
  r.add({"FusedMatMul", 2, 4, infer_fused_matmul, kFusedDomain});
}

}  // namespace tandem

// Schemas of the quantize family: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
// MatMulInteger, QLinearMatMul, ConvInteger, QLinearConv. The integer matmul/conv ops take the
// shapes of MatMul/Conv (their schemas are asked with float64 operands of the same shapes).
#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

bool is_quant(DataType t) {
  return t == DataType::kInt8 || t == DataType::kUInt8;
}

void check_quant(const InferContext& ctx, size_t i, const char* what) {
  const TensorType& t = ctx.input(i);
  TANDEM_CHECK(is_quant(t.dtype), ErrorCode::kUnsupported,
               "{}: {} (input {}) is {}; only int8/uint8 are supported", ctx.node.describe(), what,
               i, dtype_name(t.dtype));
}

// Output shape of `op` (MatMul or Conv) for the inputs at `idx`, with dtype `dtype`.
TensorType infer_like(const InferContext& ctx, const char* op, std::vector<size_t> idx,
                      DataType dtype) {
  std::vector<TensorType> types;
  for (size_t i : idx) types.push_back({DataType::kFloat64, ctx.input(i).shape});
  std::vector<const TensorType*> ptrs;
  for (const TensorType& t : types) ptrs.push_back(&t);
  std::vector<const Tensor*> values(ptrs.size(), nullptr);
  InferContext sub(ctx.node, ptrs, values);
  TensorType out = schemas().find("", op)->infer(sub).at(0);
  out.dtype = dtype;
  return out;
}

std::vector<TensorType> infer_quantize(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(x.dtype == DataType::kFloat32 || x.dtype == DataType::kInt32,
               ErrorCode::kUnsupported, "{}: input dtype {} is not supported (float32/int32)",
               ctx.node.describe(), dtype_name(x.dtype));
  DataType out = DataType::kUInt8;
  if (ctx.has_input(2)) {
    check_quant(ctx, 2, "y_zero_point");
    out = ctx.input(2).dtype;
  }
  return {{out, x.shape}};
}

std::vector<TensorType> infer_dequantize(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(is_quant(x.dtype) || x.dtype == DataType::kInt32, ErrorCode::kUnsupported,
               "{}: input dtype {} is not supported (int8/uint8/int32)", ctx.node.describe(),
               dtype_name(x.dtype));
  return {{ctx.input(1).dtype, x.shape}};
}

std::vector<TensorType> infer_dynamic_quantize(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(x.dtype == DataType::kFloat32, ErrorCode::kUnsupported,
               "{}: input dtype {} is not supported (float32 only)", ctx.node.describe(),
               dtype_name(x.dtype));
  return {{DataType::kUInt8, x.shape}, {DataType::kFloat32, {}}, {DataType::kUInt8, {}}};
}

std::vector<TensorType> infer_matmul_integer(const InferContext& ctx) {
  check_quant(ctx, 0, "A");
  check_quant(ctx, 1, "B");
  return {infer_like(ctx, "MatMul", {0, 1}, DataType::kInt32)};
}

std::vector<TensorType> infer_qlinear_matmul(const InferContext& ctx) {
  check_quant(ctx, 0, "a");
  check_quant(ctx, 3, "b");
  check_quant(ctx, 7, "y_zero_point");
  return {infer_like(ctx, "MatMul", {0, 3}, ctx.input(7).dtype)};
}

std::vector<TensorType> infer_conv_integer(const InferContext& ctx) {
  check_quant(ctx, 0, "x");
  check_quant(ctx, 1, "w");
  return {infer_like(ctx, "Conv", {0, 1}, DataType::kInt32)};
}

std::vector<TensorType> infer_qlinear_conv(const InferContext& ctx) {
  check_quant(ctx, 0, "x");
  check_quant(ctx, 3, "w");
  check_quant(ctx, 7, "y_zero_point");
  if (ctx.has_input(8)) {
    TANDEM_CHECK(ctx.input(8).dtype == DataType::kInt32, ErrorCode::kInvalidModel,
                 "{}: bias B must be int32, got {}", ctx.node.describe(),
                 dtype_name(ctx.input(8).dtype));
  }
  return {infer_like(ctx, "Conv", {0, 3}, ctx.input(7).dtype)};
}

}  // namespace

void register_quantize_schemas(SchemaRegistry& r) {
  r.add({"QuantizeLinear", 2, 3, infer_quantize, ""});
  r.add({"DequantizeLinear", 2, 3, infer_dequantize, ""});
  r.add({"DynamicQuantizeLinear", 1, 1, infer_dynamic_quantize, ""});
  r.add({"MatMulInteger", 2, 4, infer_matmul_integer, ""});
  r.add({"QLinearMatMul", 8, 8, infer_qlinear_matmul, ""});
  r.add({"ConvInteger", 2, 4, infer_conv_integer, ""});
  r.add({"QLinearConv", 8, 9, infer_qlinear_conv, ""});
}

}  // namespace tandem

// Schemas of the pool family: MaxPool, AveragePool, LpPool (windowed, 1-D to 3-D) and
// GlobalAveragePool, GlobalMaxPool, GlobalLpPool.
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

void check_input(const InferContext& ctx, bool any_numeric) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(x.shape.size() >= 3 && x.shape.size() <= 5, ErrorCode::kUnsupported,
               "{}: input X must have rank 3 to 5 (1-D to 3-D), got shape {}", node.describe(),
               shape_str(x.shape));
  const bool is_float = x.dtype == DataType::kFloat32 || x.dtype == DataType::kFloat64;
  const bool is_int8 = x.dtype == DataType::kInt8 || x.dtype == DataType::kUInt8;
  TANDEM_CHECK(is_float || (any_numeric && is_int8), ErrorCode::kUnsupported,
               "{}: dtype {} is not supported (float32/float64{})", node.describe(),
               dtype_name(x.dtype), any_numeric ? "/int8/uint8" : "");
}

// Output shape of a windowed pool; mirrors the kernel's geometry in backends/ref/pool.cc.
Shape pooled_shape(const Node& node, const Shape& x) {
  const size_t n = x.size() - 2;
  std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
  std::vector<int64_t> strides = node.attr_ints_or("strides", std::vector<int64_t>(n, 1));
  std::vector<int64_t> dilations = node.attr_ints_or("dilations", std::vector<int64_t>(n, 1));
  std::vector<int64_t> pads = node.attr_ints_or("pads", std::vector<int64_t>(2 * n, 0));
  const std::string auto_pad = node.attr_string_or("auto_pad", "NOTSET");
  const bool ceil_mode = node.attr_int_or("ceil_mode", 0) != 0;
  TANDEM_CHECK(
      kernel.size() == n && strides.size() == n && dilations.size() == n && pads.size() == 2 * n,
      ErrorCode::kInvalidModel,
      "{}: kernel_shape {}, strides {}, dilations {}, pads {} must have {}, {}, {}, {} "
      "values for input shape {}",
      node.describe(), shape_str(kernel), shape_str(strides), shape_str(dilations), shape_str(pads),
      n, n, n, 2 * n, shape_str(x));
  TANDEM_CHECK(auto_pad == "NOTSET" || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER" ||
                   auto_pad == "VALID",
               ErrorCode::kUnsupported, "{}: auto_pad '{}' is not supported", node.describe(),
               auto_pad);
  Shape out{x[0], x[1]};
  for (size_t i = 0; i < n; ++i) {
    TANDEM_CHECK(
        kernel[i] >= 1 && strides[i] >= 1 && dilations[i] >= 1 && pads[i] >= 0 && pads[i + n] >= 0,
        ErrorCode::kInvalidModel,
        "{}: kernel_shape {}, strides {}, dilations {} must be >= 1 and pads {} >= 0",
        node.describe(), shape_str(kernel), shape_str(strides), shape_str(dilations),
        shape_str(pads));
    const int64_t in = x[i + 2], s = strides[i];
    const int64_t k_eff = (kernel[i] - 1) * dilations[i] + 1;
    int64_t o;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      o = (in + s - 1) / s;
    } else {
      const int64_t pb = auto_pad == "VALID" ? 0 : pads[i];
      const int64_t padded = auto_pad == "VALID" ? in : in + pads[i] + pads[i + n];
      TANDEM_CHECK(padded >= k_eff, ErrorCode::kInvalidArgument,
                   "{}: spatial axis {} of size {} (padded {}) is smaller than the window {}",
                   node.describe(), i, in, padded, k_eff);
      if (ceil_mode) {
        o = (padded - k_eff + s - 1) / s + 1;
        // A last window starting inside the end padding would see no input: drop it.
        if ((o - 1) * s >= in + pb) --o;
      } else {
        o = (padded - k_eff) / s + 1;
      }
    }
    out.push_back(o);
  }
  return out;
}

std::vector<TensorType> infer_max_pool(const InferContext& ctx) {
  check_input(ctx, true);
  const int64_t storage_order = ctx.node.attr_int_or("storage_order", 0);
  TANDEM_CHECK(storage_order == 0 || storage_order == 1, ErrorCode::kInvalidModel,
               "{}: storage_order must be 0 or 1, got {}", ctx.node.describe(), storage_order);
  Shape out = pooled_shape(ctx.node, ctx.input(0).shape);
  return {TensorType{ctx.input(0).dtype, out}, TensorType{DataType::kInt64, out}};
}

std::vector<TensorType> infer_average_pool(const InferContext& ctx) {
  check_input(ctx, false);
  return {TensorType{ctx.input(0).dtype, pooled_shape(ctx.node, ctx.input(0).shape)}};
}

std::vector<TensorType> infer_lp_pool(const InferContext& ctx) {
  check_input(ctx, false);
  const int64_t p = ctx.node.attr_int_or("p", 2);
  TANDEM_CHECK(p >= 1, ErrorCode::kInvalidModel, "{}: p must be >= 1, got {}", ctx.node.describe(),
               p);
  return {TensorType{ctx.input(0).dtype, pooled_shape(ctx.node, ctx.input(0).shape)}};
}

std::vector<TensorType> infer_global_pool(const InferContext& ctx) {
  check_input(ctx, ctx.node.op_type == "GlobalMaxPool");
  Shape out = ctx.input(0).shape;
  for (size_t i = 2; i < out.size(); ++i) out[i] = 1;
  return {TensorType{ctx.input(0).dtype, out}};
}

// MaxUnpool: the output shape is the output_shape input when given, else per spatial axis
// (in - 1) * stride + kernel - pad_begin - pad_end.
std::vector<TensorType> infer_max_unpool(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(ctx.input(1).dtype == DataType::kInt64 && ctx.input(1).shape == x.shape,
               ErrorCode::kInvalidArgument,
               "{}: indices I must be int64 of X's shape {}, got {} {}", node.describe(),
               shape_str(x.shape), dtype_name(ctx.input(1).dtype), shape_str(ctx.input(1).shape));
  if (ctx.has_input(2)) {
    Shape out = tensor_to_int64s(ctx.require_value(2), node);
    TANDEM_CHECK(out.size() == x.shape.size(), ErrorCode::kInvalidArgument,
                 "{}: output_shape {} must have X's rank {}", node.describe(), shape_str(out),
                 x.shape.size());
    return {{x.dtype, out}};
  }
  TANDEM_CHECK(x.shape.size() >= 3, ErrorCode::kInvalidArgument,
               "{}: X must be [N, C, spatial...], got {}", node.describe(), shape_str(x.shape));
  const size_t n = x.shape.size() - 2;
  std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
  std::vector<int64_t> strides = node.attr_ints_or("strides", std::vector<int64_t>(n, 1));
  std::vector<int64_t> pads = node.attr_ints_or("pads", std::vector<int64_t>(2 * n, 0));
  TANDEM_CHECK(kernel.size() == n && strides.size() == n && pads.size() == 2 * n,
               ErrorCode::kInvalidModel,
               "{}: kernel_shape/strides/pads do not match {} spatial axes", node.describe(), n);
  Shape out = x.shape;
  for (size_t i = 0; i < n; ++i)
    out[i + 2] = (x.shape[i + 2] - 1) * strides[i] + kernel[i] - pads[i] - pads[i + n];
  return {{x.dtype, out}};
}

}  // namespace

void register_pool_schemas(SchemaRegistry& r) {
  r.add({"MaxPool", 1, 1, infer_max_pool});
  r.add({"AveragePool", 1, 1, infer_average_pool});
  r.add({"LpPool", 1, 1, infer_lp_pool});
  r.add({"GlobalAveragePool", 1, 1, infer_global_pool});
  r.add({"GlobalMaxPool", 1, 1, infer_global_pool});
  r.add({"GlobalLpPool", 1, 1, infer_global_pool});
  r.add({"MaxUnpool", 2, 3, infer_max_unpool});
}

}  // namespace tandem

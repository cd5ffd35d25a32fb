// Schemas of the pool family: MaxPool, AveragePool, LpPool (windowed, 1-D to 3-D) and
// GlobalAveragePool, GlobalMaxPool, GlobalLpPool.
#include "ops/pool.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

// The largest kernel, stride, dilation and pad PoolAttrs::fits accepts.
constexpr int64_t kMaxPoolWindow = int64_t{1} << 31;

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

}  // namespace

PoolAttrs PoolAttrs::parse(const Node& node) {
  PoolAttrs a;
  a.kernel_shape = node.attr_ints_or("kernel_shape", {});
  a.strides = node.attr_ints_or("strides", {});
  a.dilations = node.attr_ints_or("dilations", {});
  a.pads = node.attr_ints_or("pads", {});
  a.auto_pad = node.attr_string_or("auto_pad", "NOTSET");
  a.ceil_mode = node.attr_int_or("ceil_mode", 0) != 0;
  a.count_include_pad = node.attr_int_or("count_include_pad", 0) != 0;
  const int64_t storage_order = node.attr_int_or("storage_order", 0);
  a.column_major_indices = storage_order == 1;
  a.p = node.attr_int_or("p", 2);
  TANDEM_CHECK(a.auto_pad == "NOTSET" || a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER" ||
                   a.auto_pad == "VALID",
               ErrorCode::kUnsupported, "{}: auto_pad '{}' is not supported", node.describe(),
               a.auto_pad);
  TANDEM_CHECK(storage_order == 0 || storage_order == 1, ErrorCode::kInvalidModel,
               "{}: storage_order must be 0 or 1, got {}", node.describe(), storage_order);
  TANDEM_CHECK(a.p >= 1, ErrorCode::kInvalidModel, "{}: p must be >= 1, got {}", node.describe(),
               a.p);
  return a;
}

bool PoolAttrs::fits(size_t n) const {
  auto sized = [](const std::vector<int64_t>& v, size_t want) {
    return v.empty() || v.size() == want;
  };
  if (kernel_shape.size() != n || !sized(strides, n) || !sized(dilations, n) || !sized(pads, 2 * n))
    return false;
  // The window attributes come from the file. Real pools have windows, strides and pads of a few
  // pixels; capping them at 2^31 keeps the window's span (kernel - 1) * dilation + 1 below 2^62,
  // so that it and the pads can be added to a spatial size with one overflow check.
  auto all_within = [](const std::vector<int64_t>& v, int64_t lo) {
    for (int64_t x : v)
      if (x < lo || x > kMaxPoolWindow) return false;
    return true;
  };
  return all_within(kernel_shape, 1) && all_within(strides, 1) && all_within(dilations, 1) &&
         all_within(pads, 0);
}

void PoolAttrs::check(const Shape& x, const Node& node) const {
  TANDEM_CHECK(x.size() >= 3, ErrorCode::kInvalidArgument,
               "{}: X must be [N, C, spatial...], got {}", node.describe(), shape_str(x));
  const size_t n = x.size() - 2;
  TANDEM_CHECK(fits(n), ErrorCode::kInvalidModel,
               "{}: kernel_shape {}, strides {}, dilations {}, pads {} must have {}, {}, {}, {} "
               "values (kernel_shape, strides and dilations in 1..2^31, pads in 0..2^31) for input "
               "shape {}",
               node.describe(), shape_str(kernel_shape), shape_str(strides), shape_str(dilations),
               shape_str(pads), n, n, n, 2 * n, shape_str(x));
}

PoolAxis PoolAttrs::axis(size_t i, size_t n, int64_t in, int64_t out) const {
  PoolAxis a;
  a.kernel = kernel_shape[i];
  a.stride = strides.empty() ? 1 : strides[i];
  a.dilation = dilations.empty() ? 1 : dilations[i];
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    // out = ceil(in / stride) (output_shape), so (out - 1) * stride - in lies in [-stride, 0) and
    // adding the span (< 2^62) last cannot wrap; the check guards a caller with another `out`.
    int64_t t = 0;
    const bool wraps = __builtin_mul_overflow(out - 1, a.stride, &t) ||
                       __builtin_sub_overflow(t, in, &t) ||
                       __builtin_add_overflow(t, a.extent(), &t);
    TANDEM_CHECK(!wraps, ErrorCode::kInvalidModel,
                 "pool SAME padding of spatial axis {} overflows (input {}, output {}, stride {})",
                 i, in, out, a.stride);
    const int64_t total = std::max<int64_t>(0, t);
    a.pad_begin = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    a.pad_end = total - a.pad_begin;
  } else if (auto_pad == "NOTSET" && !pads.empty()) {
    a.pad_begin = pads[i];
    a.pad_end = pads[i + n];
  }
  return a;
}

Shape PoolAttrs::unpooled_shape(const Shape& x, const Node& node) const {
  check(x, node);
  const size_t n = x.size() - 2;
  Shape out = x;
  for (size_t i = 0; i < n; ++i) {
    const PoolAxis a = axis(i, n, x[i + 2], 0);
    // (in - 1) * stride + kernel - pads, with `in` as large as the file says (or 0).
    int64_t o = 0;
    const bool wraps = __builtin_mul_overflow(x[i + 2] - 1, a.stride, &o) ||
                       __builtin_add_overflow(o, a.kernel, &o);
    TANDEM_CHECK(!wraps, ErrorCode::kInvalidModel,
                 "{}: the output size of spatial axis {} (input {}, stride {}) overflows 64 bits",
                 node.describe(), i, x[i + 2], a.stride);
    out[i + 2] = o - a.pad_begin - a.pad_end;  // o >= 1 - stride, pads <= 2^32: no wrap
  }
  return out;
}

Shape PoolAttrs::output_shape(const Shape& x, const Node& node) const {
  check(x, node);
  const size_t n = x.size() - 2;
  Shape out{x[0], x[1]};
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = x[i + 2];
    // The explicit pads (SAME_* is sized from the output, so its padding does not matter here).
    const PoolAxis a = axis(i, n, in, 0);
    const int64_t s = a.stride, k_eff = a.extent();
    int64_t o;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      o = ceil_div(in, s);
    } else {
      // The input's size may be up to 2^63 - 1 (when another dim is 0): the sum may not fit.
      int64_t padded = 0;
      const bool wraps = __builtin_add_overflow(in, a.pad_begin, &padded) ||
                         __builtin_add_overflow(padded, a.pad_end, &padded);
      TANDEM_CHECK(!wraps, ErrorCode::kInvalidModel,
                   "{}: spatial axis {} of size {} with pads {} overflows 64 bits", node.describe(),
                   i, in, shape_str(pads));
      TANDEM_CHECK(padded >= k_eff, ErrorCode::kInvalidArgument,
                   "{}: spatial axis {} of size {} (padded {}) is smaller than the window {}",
                   node.describe(), i, in, padded, k_eff);
      if (ceil_mode) {
        o = ceil_div(padded - k_eff, s) + 1;
        // A last window starting inside the end padding would see no input: drop it. (in +
        // pad_begin fits, being part of `padded`; a start that wraps is past it.)
        int64_t start = 0;
        if (__builtin_mul_overflow(o - 1, s, &start) || start >= in + a.pad_begin) --o;
      } else {
        o = (padded - k_eff) / s + 1;
      }
    }
    out.push_back(o);
  }
  return out;
}

namespace {

std::vector<TensorType> infer_max_pool(const InferContext& ctx, const PoolAttrs& a) {
  check_input(ctx, true);
  Shape out = a.output_shape(ctx.input(0).shape, ctx.node);
  return {TensorType{ctx.input(0).dtype, out}, TensorType{DataType::kInt64, out}};
}

// AveragePool and LpPool (PoolAttrs::parse checked p).
std::vector<TensorType> infer_average_pool(const InferContext& ctx, const PoolAttrs& a) {
  check_input(ctx, false);
  return {TensorType{ctx.input(0).dtype, a.output_shape(ctx.input(0).shape, ctx.node)}};
}

std::vector<TensorType> infer_global_pool(const InferContext& ctx, const PoolAttrs&) {
  check_input(ctx, ctx.node.op_type == "GlobalMaxPool");
  Shape out = ctx.input(0).shape;
  for (size_t i = 2; i < out.size(); ++i) out[i] = 1;
  return {TensorType{ctx.input(0).dtype, out}};
}

// MaxUnpool: the output shape is the output_shape input when given, else per spatial axis
// (in - 1) * stride + kernel - pad_begin - pad_end.
std::vector<TensorType> infer_max_unpool(const InferContext& ctx, const PoolAttrs& a) {
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
  return {{x.dtype, a.unpooled_shape(x.shape, node)}};
}

}  // namespace

void register_pool_schemas(SchemaRegistry& r) {
  r.add({"MaxPool", 1, 1, with_attrs(infer_max_pool)});
  r.add({"AveragePool", 1, 1, with_attrs(infer_average_pool)});
  r.add({"LpPool", 1, 1, with_attrs(infer_average_pool)});
  r.add({"GlobalAveragePool", 1, 1, with_attrs(infer_global_pool)});
  r.add({"GlobalMaxPool", 1, 1, with_attrs(infer_global_pool)});
  r.add({"GlobalLpPool", 1, 1, with_attrs(infer_global_pool)});
  r.add({"MaxUnpool", 2, 3, with_attrs(infer_max_unpool)});
}

}  // namespace tandem

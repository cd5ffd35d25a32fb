// Schemas of the conv family: Conv and ConvTranspose (1-D, 2-D and 3-D), and FusedConv
// (kFusedDomain: a Conv with an added tensor and an activation).
//
// Both take X [N, C, D1..Dn] and a weight W; the output spatial sizes follow from the kernel
// size, strides, dilations and padding (explicit `pads` or `auto_pad`).
#include "ops/conv.h"

#include <algorithm>
#include <string>
#include <vector>

#include "core/checked.h"
#include "core/error.h"
#include "ops/fused_activation.h"
#include "ops/layout.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

// The largest kernel, stride, dilation, pad and output_padding read_conv_attrs accepts.
constexpr int64_t kMaxConvWindow = int64_t{1} << 31;

// The dilated kernel's span; read_conv_attrs bounded both factors, so it is below 2^62.
int64_t dilated_kernel(const ConvAttrs& a, size_t i) {
  return (a.kernel[i] - 1) * a.dilations[i] + 1;
}

}  // namespace

ConvAttrs read_conv_attrs(const Node& node, const Shape& x, const Shape& w) {
  TANDEM_CHECK(x.size() >= 3 && x.size() <= 5, ErrorCode::kUnsupported,
               "{}: input X must have rank 3 to 5 (1-D to 3-D), got shape {}", node.describe(),
               shape_str(x));
  TANDEM_CHECK(w.size() == x.size(), ErrorCode::kInvalidModel,
               "{}: weight W shape {} must have the same rank as X shape {}", node.describe(),
               shape_str(w), shape_str(x));
  const size_t n = x.size() - 2;
  ConvAttrs a;
  a.group = node.attr_int_or("group", 1);
  TANDEM_CHECK(a.group >= 1, ErrorCode::kInvalidModel, "{}: group must be >= 1, got {}",
               node.describe(), a.group);
  a.kernel.assign(w.begin() + 2, w.end());
  if (node.has_attr("kernel_shape")) {
    std::vector<int64_t> k = node.attr_ints("kernel_shape");
    TANDEM_CHECK(k == a.kernel, ErrorCode::kInvalidModel,
                 "{}: kernel_shape {} does not match the weight's spatial shape {}",
                 node.describe(), shape_str(k), shape_str(a.kernel));
  }
  a.strides = node.attr_ints_or("strides", std::vector<int64_t>(n, 1));
  a.dilations = node.attr_ints_or("dilations", std::vector<int64_t>(n, 1));
  a.pads = node.attr_ints_or("pads", std::vector<int64_t>(2 * n, 0));
  a.auto_pad = node.attr_string_or("auto_pad", "NOTSET");
  TANDEM_CHECK(a.strides.size() == n && a.dilations.size() == n && a.pads.size() == 2 * n,
               ErrorCode::kInvalidModel,
               "{}: strides {}, dilations {} and pads {} must have {}, {} and {} values",
               node.describe(), shape_str(a.strides), shape_str(a.dilations), shape_str(a.pads), n,
               n, 2 * n);
  // The window attributes come from the file. Real convolutions have kernels, strides,
  // dilations and pads of a few pixels; capping them at 2^31 keeps (kernel - 1) * dilation + 1
  // below 2^62, so that span and the pads can be added to a spatial size with one overflow check.
  auto in_range = [](int64_t v, int64_t lo) { return v >= lo && v <= kMaxConvWindow; };
  for (size_t i = 0; i < n; ++i) {
    TANDEM_CHECK(
        in_range(a.strides[i], 1) && in_range(a.dilations[i], 1) && in_range(a.pads[i], 0) &&
            in_range(a.pads[i + n], 0) && in_range(a.kernel[i], 1),
        ErrorCode::kInvalidModel,
        "{}: strides {} and dilations {} must be in 1..2^31, pads {} in 0..2^31, kernel {} "
        "in 1..2^31",
        node.describe(), shape_str(a.strides), shape_str(a.dilations), shape_str(a.pads),
        shape_str(a.kernel));
  }
  TANDEM_CHECK(a.auto_pad == "NOTSET" || a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER" ||
                   a.auto_pad == "VALID",
               ErrorCode::kUnsupported, "{}: auto_pad '{}' is not supported", node.describe(),
               a.auto_pad);
  return a;
}

void conv_pads(const ConvAttrs& a, const Shape& x, const Shape& y, std::vector<int64_t>& begin,
               std::vector<int64_t>& end) {
  const size_t n = x.size() - 2;
  begin.assign(n, 0);
  end.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    if (a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER") {
      // y = ceil(x / stride) (conv_output_shape), so (y - 1) * stride - x lies in [-stride, 0)
      // and adding the dilated kernel (< 2^62) last cannot wrap. The check guards a caller that
      // passes some other y.
      int64_t t = 0;
      const bool wraps = __builtin_mul_overflow(y[i + 2] - 1, a.strides[i], &t) ||
                         __builtin_sub_overflow(t, x[i + 2], &t) ||
                         __builtin_add_overflow(t, dilated_kernel(a, i), &t);
      TANDEM_CHECK(
          !wraps, ErrorCode::kInvalidModel,
          "conv SAME padding of spatial axis {} overflows (input {}, output {}, stride {})", i,
          shape_str(x), shape_str(y), a.strides[i]);
      const int64_t total = std::max<int64_t>(0, t);
      begin[i] = a.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      end[i] = total - begin[i];
    } else if (a.auto_pad == "NOTSET") {
      begin[i] = a.pads[i];
      end[i] = a.pads[i + n];
    }
  }
}

std::vector<int64_t> conv_transpose_pad_begins(const Node& node, const ConvAttrs& a, const Shape& x,
                                               const Shape& y) {
  const size_t n = x.size() - 2;
  const std::vector<int64_t> out_pad =
      node.attr_ints_or("output_padding", std::vector<int64_t>(n, 0));
  const bool derived =
      node.has_attr("output_shape") || a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER";
  std::vector<int64_t> begin(n, 0);
  for (size_t i = 0; i < n; ++i) {
    if (derived) {
      // stride * (in - 1) + output_padding + dilated kernel - out; `in` and (with output_shape)
      // `out` are as large as the file says.
      const int64_t op = i < out_pad.size() ? out_pad[i] : 0;
      int64_t t = 0;
      const bool wraps = __builtin_mul_overflow(a.strides[i], x[i + 2] - 1, &t) ||
                         __builtin_add_overflow(t, op, &t) ||
                         __builtin_add_overflow(t, dilated_kernel(a, i), &t) ||
                         __builtin_sub_overflow(t, y[i + 2], &t);
      TANDEM_CHECK(!wraps, ErrorCode::kInvalidModel,
                   "{}: the padding of spatial axis {} overflows (input {}, output {}, stride {}, "
                   "output_padding {})",
                   node.describe(), i, shape_str(x), shape_str(y), a.strides[i], op);
      const int64_t total = std::max<int64_t>(0, t);
      begin[i] = a.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    } else if (a.auto_pad == "NOTSET") {
      begin[i] = a.pads[i];
    }
  }
  return begin;
}

Shape conv_output_shape(const Node& node, const Shape& x, const Shape& w) {
  ConvAttrs a = read_conv_attrs(node, x, w);
  const size_t n = x.size() - 2;
  // Divide rather than multiply: group comes from the file and W[1] * group may wrap.
  TANDEM_CHECK(x[1] % a.group == 0 && x[1] / a.group == w[1] && w[0] % a.group == 0,
               ErrorCode::kInvalidModel,
               "{}: X has {} channels and W shape {} with group {}: need C == W[1] * group and "
               "W[0] divisible by group",
               node.describe(), x[1], shape_str(w), a.group);
  Shape out{x[0], w[0]};
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = x[i + 2], s = a.strides[i];
    const int64_t k_eff = dilated_kernel(a, i);
    int64_t o;
    if (a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER") {
      o = ceil_div(in, s);  // the padding adapts
    } else {
      // The input's size may be up to 2^63 - 1 (when another dim is 0): the sum may not fit.
      int64_t padded = in;
      if (a.auto_pad != "VALID") {
        const bool wraps = __builtin_add_overflow(in, a.pads[i], &padded) ||
                           __builtin_add_overflow(padded, a.pads[i + n], &padded);
        TANDEM_CHECK(!wraps, ErrorCode::kInvalidModel,
                     "{}: spatial axis {} of size {} with pads {} overflows 64 bits",
                     node.describe(), i, in, shape_str(a.pads));
      }
      TANDEM_CHECK(padded >= k_eff, ErrorCode::kInvalidArgument,
                   "{}: spatial axis {} of size {} (padded {}) is smaller than the dilated "
                   "kernel {}",
                   node.describe(), i, in, padded, k_eff);
      o = (padded - k_eff) / s + 1;
    }
    out.push_back(o);
  }
  return out;
}

namespace {

void check_bias(const InferContext& ctx, int64_t channels) {
  if (!ctx.has_input(2)) return;
  const TensorType& b = ctx.input(2);
  TANDEM_CHECK(b.shape == Shape{channels}, ErrorCode::kInvalidModel,
               "{}: bias B has shape {}, expected [{}]", ctx.node.describe(), shape_str(b.shape),
               channels);
  TANDEM_CHECK(b.dtype == ctx.input(0).dtype, ErrorCode::kInvalidModel,
               "{}: bias B is {} but X is {}", ctx.node.describe(), dtype_name(b.dtype),
               dtype_name(ctx.input(0).dtype));
}

void check_float(const InferContext& ctx) {
  DataType xt = ctx.input(0).dtype, wt = ctx.input(1).dtype;
  TANDEM_CHECK(xt == DataType::kFloat32 || xt == DataType::kFloat64, ErrorCode::kUnsupported,
               "{}: dtype {} is not supported (float32/float64 only)", ctx.node.describe(),
               dtype_name(xt));
  TANDEM_CHECK(wt == xt, ErrorCode::kInvalidModel, "{}: weight W is {} but X is {}",
               ctx.node.describe(), dtype_name(wt), dtype_name(xt));
}

std::vector<TensorType> infer_conv(const InferContext& ctx) {
  check_float(ctx);
  const Shape& w = ctx.input(1).shape;
  Shape out = conv_output_shape(ctx.node, ctx.input(0).shape, w);
  check_bias(ctx, w[0]);
  return {TensorType{ctx.input(0).dtype, out}};
}

// FusedConv (kFusedDomain): Y = act(Conv(X, W, B) + Z). Z is optional and broadcasts like Add's
// operands (the fusion pass cannot always see shapes); activation and activation_params as in
// ops/fused_activation.h. With channels_last = 1 (2-D only), X, Z and Y are NHWC (ops/layout.h):
// the conv's output is turned to NHWC before Z is added.
std::vector<TensorType> infer_fused_conv(const InferContext& ctx) {
  std::vector<TensorType> out;
  if (is_channels_last(ctx.node)) {
    const TensorType& x = ctx.input(0);
    TANDEM_CHECK(x.shape.size() == 4, ErrorCode::kInvalidModel,
                 "{}: channels_last needs a 2-D conv (X of rank 4), X is {}", ctx.node.describe(),
                 shape_str(x.shape));
    const TensorType nchw{x.dtype, nhwc_to_nchw(x.shape)};
    std::vector<const TensorType*> types{&nchw};
    for (size_t i = 1; i < ctx.num_inputs(); ++i)
      types.push_back(ctx.has_input(i) ? &ctx.input(i) : nullptr);
    std::vector<const Tensor*> values(types.size(), nullptr);
    out = infer_conv(InferContext(ctx.node, types, values));
    out[0].shape = nchw_to_nhwc(out[0].shape);
  } else {
    out = infer_conv(ctx);
  }
  read_fused_activation(ctx.node);
  if (ctx.has_input(3)) {
    const TensorType& z = ctx.input(3);
    TANDEM_CHECK(z.dtype == out[0].dtype, ErrorCode::kInvalidModel, "{}: Z is {} but X is {}",
                 ctx.node.describe(), dtype_name(z.dtype), dtype_name(out[0].dtype));
    out[0].shape = broadcast_shapes(out[0].shape, z.shape, ctx.node);
  }
  return out;
}

std::vector<TensorType> infer_conv_transpose(const InferContext& ctx) {
  const Node& node = ctx.node;
  check_float(ctx);
  const Shape& x = ctx.input(0).shape;
  const Shape& w = ctx.input(1).shape;
  ConvAttrs a = read_conv_attrs(node, x, w);
  const size_t n = x.size() - 2;
  TANDEM_CHECK(x[1] == w[0] && w[0] % a.group == 0, ErrorCode::kInvalidModel,
               "{}: X has {} channels and W shape {} with group {}: need C == W[0], divisible "
               "by group",
               node.describe(), x[1], shape_str(w), a.group);
  const int64_t m = checked_mul(w[1], a.group, node.describe());
  check_bias(ctx, m);
  std::vector<int64_t> out_pad = node.attr_ints_or("output_padding", std::vector<int64_t>(n, 0));
  TANDEM_CHECK(out_pad.size() == n, ErrorCode::kInvalidModel,
               "{}: output_padding {} must have {} values", node.describe(), shape_str(out_pad), n);
  // Bounded like the pads (read_conv_attrs) so that the output size below is one checked sum.
  for (int64_t op : out_pad)
    TANDEM_CHECK(op >= 0 && op <= kMaxConvWindow, ErrorCode::kInvalidModel,
                 "{}: output_padding {} must be in 0..2^31", node.describe(), shape_str(out_pad));
  Shape out{x[0], m};
  if (node.has_attr("output_shape")) {
    // Either the spatial sizes or the full output shape; the pads follow from it.
    std::vector<int64_t> os = node.attr_ints("output_shape");
    TANDEM_CHECK(os.size() == n || os.size() == n + 2, ErrorCode::kInvalidModel,
                 "{}: output_shape {} must have {} (or {}) values", node.describe(), shape_str(os),
                 n, n + 2);
    for (size_t i = 0; i < n; ++i) {
      int64_t o = os[os.size() - n + i];
      TANDEM_CHECK(o >= 0, ErrorCode::kInvalidModel, "{}: negative output_shape {}",
                   node.describe(), shape_str(os));
      out.push_back(o);
    }
    return {TensorType{ctx.input(0).dtype, out}};
  }
  for (size_t i = 0; i < n; ++i) {
    const int64_t in = x[i + 2], s = a.strides[i];
    int64_t o = 0;
    bool wraps;
    if (a.auto_pad == "SAME_UPPER" || a.auto_pad == "SAME_LOWER") {
      wraps = __builtin_mul_overflow(in, s, &o);
    } else {
      // stride * (in - 1) + output_padding + dilated kernel - pads; in may be 0 (then the first
      // term is -stride) or up to 2^63 - 1.
      const int64_t pads = a.auto_pad == "VALID" ? 0 : a.pads[i] + a.pads[i + n];
      wraps = __builtin_mul_overflow(s, in - 1, &o) ||
              __builtin_add_overflow(o, out_pad[i] + dilated_kernel(a, i), &o);
      o -= pads;  // o >= -stride here and pads <= 2^32: no wrap
    }
    TANDEM_CHECK(!wraps, ErrorCode::kInvalidModel,
                 "{}: the output size of spatial axis {} (input {}, stride {}) overflows 64 bits",
                 node.describe(), i, in, s);
    TANDEM_CHECK(o >= 0, ErrorCode::kInvalidModel,
                 "{}: the pads {} leave a negative output size on spatial axis {}", node.describe(),
                 shape_str(a.pads), i);
    out.push_back(o);
  }
  return {TensorType{ctx.input(0).dtype, out}};
}

}  // namespace

void register_conv_schemas(SchemaRegistry& r) {
  r.add({"Conv", 2, 3, infer_conv});
  r.add({"ConvTranspose", 2, 3, infer_conv_transpose});
  r.add({"FusedConv", 2, 4, infer_fused_conv, kFusedDomain});
}

}  // namespace tandem

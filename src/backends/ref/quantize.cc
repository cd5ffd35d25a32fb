// Reference kernels of the quantize family. Quantized values become real values
// (q - zero_point) * scale in double precision; the integer matmul/conv ops then run the
// reference MatMul/Conv kernels on those (exact for the integer ops: every sum is an integer far
// below 2^53) and requantize: q = saturate(round_half_even(real / scale) + zero_point).
// Scales and zero points are per tensor (one element) or per axis (a 1-D tensor along `axis`).
#include "ops/quantize.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/ref_backend.h"
#include "backends/ref/value_io.h"
#include "core/error.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

// A scale or zero point: value for flat element i of a tensor of the given shape.
struct AxisParam {
  std::vector<double> v;
  int64_t inner = 1, dim = 1;
  double at(int64_t i) const {
    return v.size() == 1 ? v[0] : v[static_cast<size_t>((i / inner) % dim)];
  }
};

AxisParam axis_param(const Node& node, const Tensor* t, const Shape& shape, int64_t axis,
                     double dflt, const char* what) {
  AxisParam p;
  if (!t) {
    p.v = {dflt};
    return p;
  }
  p.v = read_doubles(*t, node);
  if (p.v.size() == 1) return p;
  const int64_t rank = static_cast<int64_t>(shape.size());
  TANDEM_CHECK(rank > 0 && t->rank() == 1, ErrorCode::kInvalidArgument,
               "{}: {} has shape {}; expected one element or a 1-D tensor along axis {} of {}",
               node.describe(), what, shape_str(t->shape()), axis, shape_str(shape));
  axis = normalize_axis(axis, rank, node);
  TANDEM_CHECK(t->numel() == shape[axis], ErrorCode::kInvalidArgument,
               "{}: {} has {} elements but axis {} of input shape {} has {}", node.describe(), what,
               t->numel(), axis, shape_str(shape), shape[axis]);
  p.dim = shape[axis];
  for (int64_t d = axis + 1; d < rank; ++d) p.inner *= shape[d];
  return p;
}

// Real values (q - zero_point) * scale as a float64 tensor of q's shape.
Tensor to_real(const Node& node, const Tensor& q, const Tensor* scale, const Tensor* zp,
               int64_t axis) {
  AxisParam s = axis_param(node, scale, q.shape(), axis, 1.0, "scale");
  AxisParam z = axis_param(node, zp, q.shape(), axis, 0.0, "zero point");
  std::vector<double> v = read_doubles(q, node);
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t k = static_cast<int64_t>(i);
    v[i] = (v[i] - z.at(k)) * s.at(k);
  }
  return Tensor::from_vector(DataType::kFloat64, q.shape(), v);
}

// Rounds half to even (the default rounding mode) and saturates to out's int8/uint8 range.
// `single`: divide in float32, as the ONNX reference does for float32 inputs.
void quantize_into(const Node& node, const std::vector<double>& real, const AxisParam& s,
                   const AxisParam& z, bool single, Tensor& out) {
  const bool is_signed = out.dtype() == DataType::kInt8;
  const double lo = is_signed ? -128 : 0, hi = is_signed ? 127 : 255;
  std::vector<double> q(real.size());
  for (size_t i = 0; i < q.size(); ++i) {
    int64_t k = static_cast<int64_t>(i);
    TANDEM_CHECK(s.at(k) != 0, ErrorCode::kInvalidArgument, "{}: scale is zero", node.describe());
    double r = single
                   ? static_cast<double>(static_cast<float>(real[i]) / static_cast<float>(s.at(k)))
                   : real[i] / s.at(k);
    q[i] = std::clamp(std::nearbyint(r) + z.at(k), lo, hi);
  }
  write_doubles(out, q, node);
}

const Tensor* opt(std::span<const Tensor* const> inputs, size_t i) {
  return i < inputs.size() ? inputs[i] : nullptr;
}

// Runs the reference kernel of `op` (MatMul or Conv, whose attributes this node shares) on
// float64 operands, into a float64 result of `shape`.
Tensor run_float_op(const KernelContext& ctx, const char* op, const std::vector<Tensor>& ins,
                    const Shape& shape) {
  const KernelFactory* factory = reference_backend().kernels().find("", op);
  TANDEM_CHECK(factory, ErrorCode::kInternal, "{}: no reference {} kernel", ctx.node.describe(),
               op);
  std::unique_ptr<Kernel> kernel = (*factory)(ctx.node);
  Tensor out(DataType::kFloat64, shape);
  std::vector<const Tensor*> in_ptrs;
  for (const Tensor& t : ins) in_ptrs.push_back(&t);
  Tensor* out_ptrs[1] = {&out};
  kernel->compute(ctx, in_ptrs, out_ptrs);
  return out;
}

void quantize_linear(const KernelContext& ctx, const QuantizeAttrs& attrs,
                     std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const int64_t axis = attrs.axis;
  AxisParam s = axis_param(node, inputs[1], x.shape(), axis, 1.0, "y_scale");
  AxisParam z = axis_param(node, opt(inputs, 2), x.shape(), axis, 0.0, "y_zero_point");
  quantize_into(node, read_doubles(x, node), s, z, x.dtype() == DataType::kFloat32, *outputs[0]);
}

void dequantize_linear(const KernelContext& ctx, const QuantizeAttrs& attrs,
                       std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const int64_t axis = attrs.axis;
  Tensor real = to_real(node, *inputs[0], inputs[1], opt(inputs, 2), axis);
  write_doubles(*outputs[0], read_doubles(real, node), node);
}

// Scale and zero point cover [min(x, 0), max(x, 0)] with 0..255; computed in float32 as the
// ONNX definition does.
void dynamic_quantize_linear(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                             std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  std::vector<double> x = read_doubles(*inputs[0], node);
  float mn = 0, mx = 0;
  for (double v : x) {
    mn = std::min(mn, static_cast<float>(v));
    mx = std::max(mx, static_cast<float>(v));
  }
  float scale = (mx - mn) / 255.0f;
  float zp = scale == 0 ? 0 : std::clamp(std::nearbyint(0.0f - mn / scale), 0.0f, 255.0f);
  AxisParam s{{scale == 0 ? 1.0 : static_cast<double>(scale)}};
  AxisParam z{{static_cast<double>(zp)}};
  quantize_into(node, x, s, z, true, *outputs[0]);
  outputs[1]->data<float>()[0] = scale;
  outputs[2]->data<uint8_t>()[0] = static_cast<uint8_t>(zp);
}

// A's zero point/scale may be per row (axis -2), B's per column (axis -1).
int64_t row_axis(const Tensor& t) {
  return t.rank() >= 2 ? -2 : -1;
}

void matmul_integer(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                    std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor &a = *inputs[0], &b = *inputs[1];
  Tensor y = run_float_op(ctx, "MatMul",
                          {to_real(node, a, nullptr, opt(inputs, 2), row_axis(a)),
                           to_real(node, b, nullptr, opt(inputs, 3), -1)},
                          outputs[0]->shape());
  write_doubles(*outputs[0], read_doubles(y, node), node);
}

void qlinear_matmul(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                    std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor &a = *inputs[0], &b = *inputs[3];
  Tensor y = run_float_op(ctx, "MatMul",
                          {to_real(node, a, inputs[1], inputs[2], row_axis(a)),
                           to_real(node, b, inputs[4], inputs[5], -1)},
                          outputs[0]->shape());
  AxisParam s = axis_param(node, inputs[6], y.shape(), 0, 1.0, "y_scale");
  AxisParam z = axis_param(node, inputs[7], y.shape(), 0, 0.0, "y_zero_point");
  quantize_into(node, read_doubles(y, node), s, z, false, *outputs[0]);
}

void conv_integer(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                  std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  Tensor y = run_float_op(ctx, "Conv",
                          {to_real(node, *inputs[0], nullptr, opt(inputs, 2), 1),
                           to_real(node, *inputs[1], nullptr, opt(inputs, 3), 0)},
                          outputs[0]->shape());
  write_doubles(*outputs[0], read_doubles(y, node), node);
}

// The int32 bias is quantized with scale x_scale * w_scale[m] and zero point 0.
void qlinear_conv(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                  std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  std::vector<Tensor> ins = {to_real(node, *inputs[0], inputs[1], inputs[2], 1),
                             to_real(node, *inputs[3], inputs[4], inputs[5], 0)};
  if (const Tensor* bias = opt(inputs, 8)) {
    Tensor b = to_real(node, *bias, inputs[4], nullptr, 0);
    double xs = tensor_scalar_as_double(*inputs[1], node);
    std::vector<double> v = read_doubles(b, node);
    for (double& e : v) e *= xs;
    ins.push_back(Tensor::from_vector(DataType::kFloat64, b.shape(), v));
  }
  Tensor y = run_float_op(ctx, "Conv", ins, outputs[0]->shape());
  AxisParam s = axis_param(node, inputs[6], y.shape(), 0, 1.0, "y_scale");
  AxisParam z = axis_param(node, inputs[7], y.shape(), 0, 0.0, "y_zero_point");
  quantize_into(node, read_doubles(y, node), s, z, false, *outputs[0]);
}

}  // namespace

void register_quantize_ref_kernels(KernelRegistry& r) {
  r.add("QuantizeLinear", quantize_linear);
  r.add("DequantizeLinear", dequantize_linear);
  r.add("DynamicQuantizeLinear", dynamic_quantize_linear);
  r.add("MatMulInteger", matmul_integer);
  r.add("QLinearMatMul", qlinear_matmul);
  r.add("ConvInteger", conv_integer);
  r.add("QLinearConv", qlinear_conv);
}

}  // namespace tandem

// Schemas of the activation family: every output has input 0's dtype and shape.
#include "ops/activation.h"

#include <vector>

#include "core/dtype_visit.h"
#include "core/error.h"
#include "ops/legacy.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

ActivationAttrs ActivationAttrs::parse(const Node& node) {
  ActivationAttrs a;
  const std::string& op = node.op_type;
  if (op == "LeakyRelu") {
    a.alpha = node.attr_float_or("alpha", 0.01f);
  } else if (op == "ThresholdedRelu" || op == "Elu" || op == "Celu") {
    a.alpha = node.attr_float_or("alpha", 1.0f);
  } else if (op == "HardSigmoid") {
    a.alpha = node.attr_float_or("alpha", 0.2f);
    a.beta = node.attr_float_or("beta", 0.5f);
  } else if (op == "Selu") {
    a.alpha = node.attr_float_or("alpha", 1.67326319217681884765625f);
    a.gamma = node.attr_float_or("gamma", 1.05070102214813232421875f);
  } else if (op == "Shrink") {
    a.alpha = node.attr_float_or("lambd", 0.5f);
    a.beta = node.attr_float_or("bias", 0.0f);
  } else if (op == "Clip" && node.opset < 11) {
    a.clip_bounds_are_attributes = true;
    a.clip_min = node.attr_float_or("min", -std::numeric_limits<float>::infinity());
    a.clip_max = node.attr_float_or("max", std::numeric_limits<float>::infinity());
  } else if (op == "Gelu" || op == "GeGLU") {
    const std::string approx = node.attr_string_or("approximate", "none");
    TANDEM_CHECK(approx == "none" || approx == "tanh", ErrorCode::kUnsupported,
                 "{}: approximate=\"{}\" is not supported (\"none\" or \"tanh\")", node.describe(),
                 approx);
    a.tanh_approximation = approx == "tanh";
  }
  return a;
}

namespace {

bool is_floating(DataType d) {
  return d == DataType::kFloat32 || d == DataType::kFloat64 || d == DataType::kFloat16 ||
         d == DataType::kBFloat16;
}

bool is_integer(DataType d) {
  return visit_dtype<IsInteger>(d, [](auto) {});
}

// X's type, after checking it is floating point (or any numeric type when `integers`).
TensorType checked_x(const InferContext& ctx, bool integers) {
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(is_floating(x.dtype) || (integers && is_integer(x.dtype)), ErrorCode::kUnsupported,
               "{}: input has dtype {}, expected {}", ctx.node.describe(), dtype_name(x.dtype),
               integers ? "a numeric type" : "a floating-point type");
  return x;
}

void add_activation(SchemaRegistry& r, const char* op, bool integers) {
  r.add({op, 1, 1, [integers](const InferContext& ctx) {
           return std::vector<TensorType>{checked_x(ctx, integers)};
         }});
}

}  // namespace

void register_activation_schemas(SchemaRegistry& r) {
  for (const char* op : {"LeakyRelu", "ThresholdedRelu", "Sigmoid", "HardSigmoid", "HardSwish",
                         "Tanh", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Mish", "Gelu"})
    add_activation(r, op, false);
  // The fused Gelu (com.tandem) that fuse_gelu.cc makes of the erf and tanh forms torch exports:
  // the ONNX Gelu of opset 20 (attribute approximate = "none" | "tanh"), for models of any opset.
  r.add({"Gelu", 1, 1,
         [](const InferContext& ctx) { return std::vector<TensorType>{checked_x(ctx, false)}; },
         kFusedDomain});
  // GeGLU(X) (com.tandem, fuse_geglu.cc), attribute approximate: torch's
  // `a, g = X.chunk(2, -1); Y = a * gelu(g)`. With d the last dim and c = ceil(d / 2):
  // a = X[..., :c], g = X[..., c:], Y = Mul(a, Gelu(g)) (numpy broadcasting, as the Mul did).
  r.add({"GeGLU", 1, 1,
         [](const InferContext& ctx) {
           TensorType x = checked_x(ctx, false);
           TANDEM_CHECK(!x.shape.empty(), ErrorCode::kInvalidModel, "{}: X must have rank >= 1",
                        ctx.node.describe());
           const int64_t d = x.shape.back(), c = (d + 1) / 2;
           Shape a = x.shape, g = x.shape;
           a.back() = c;
           g.back() = d - c;
           x.shape = broadcast_shapes(a, g, ctx.node);
           return std::vector<TensorType>{x};
         },
         kFusedDomain});
  for (const char* op : {"Relu", "Shrink"}) add_activation(r, op, true);

  // PRelu: slope must broadcast to X without changing X's shape (before opset 7, a 1-D slope of
  // X.shape[1] values is per channel: legacy_prelu_slope_shape views it as [C, 1, ..., 1]).
  r.add({"PRelu", 2, 2, [](const InferContext& ctx) {
           TensorType x = checked_x(ctx, true);
           TensorType slope = ctx.input(1);
           slope.shape = legacy_prelu_slope_shape(ctx.node, x.shape, slope.shape);
           TANDEM_CHECK(slope.dtype == x.dtype, ErrorCode::kInvalidModel,
                        "{}: slope has dtype {} but X has {}", ctx.node.describe(),
                        dtype_name(slope.dtype), dtype_name(x.dtype));
           TANDEM_CHECK(slope.shape.size() <= x.shape.size() &&
                            broadcast_shapes(x.shape, slope.shape, ctx.node) == x.shape,
                        ErrorCode::kInvalidModel,
                        "{}: slope of shape {} does not broadcast to X's shape {}",
                        ctx.node.describe(), shape_str(slope.shape), shape_str(x.shape));
           return std::vector<TensorType>{x};
         }});

  // Clip: min/max attributes before opset 11, optional scalar inputs 1 and 2 from opset 11.
  r.add({"Clip", 1, 3, [](const InferContext& ctx) {
           TensorType x = checked_x(ctx, ctx.node.opset >= 11);
           for (size_t i = 1; i < 3; ++i) {
             if (!ctx.has_input(i)) continue;
             const TensorType& bound = ctx.input(i);
             TANDEM_CHECK(bound.dtype == x.dtype && shape_numel(bound.shape) == 1,
                          ErrorCode::kInvalidModel, "{}: {} must be a single {} value, got {} {}",
                          ctx.node.describe(), i == 1 ? "min" : "max", dtype_name(x.dtype),
                          dtype_name(bound.dtype), shape_str(bound.shape));
           }
           return std::vector<TensorType>{x};
         }});
}

}  // namespace tandem

// Schemas of the normalization family: BatchNormalization (inference), InstanceNormalization,
// LayerNormalization, GroupNormalization, LpNormalization, LRN, MeanVarianceNormalization.
#include "ops/normalization.h"

#include <string>
#include <vector>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

NormAttrs NormAttrs::parse(const Node& node) {
  NormAttrs a;
  const std::string& op = node.op_type;
  a.epsilon = node.attr_float_or("epsilon", 1e-5f);
  if (op == "BatchNormalization") {
    a.training = node.opset >= 14 ? node.attr_int_or("training_mode", 0) != 0
                                  : node.outputs.size() > 1 && node.outputs[1] != nullptr;
    a.momentum = node.attr_float_or("momentum", 0.9f);
    a.per_element_stats = node.opset < 9 && node.attr_int_or("spatial", 1) == 0;
    a.is_test = node.opset >= 7 || node.attr_int_or("is_test", 0) != 0;
  } else if (op == "LayerNormalization") {
    a.axis = node.attr_int_or("axis", -1);
    a.stash_type = node.attr_int_or("stash_type", 1);
    TANDEM_CHECK(a.stash_type == 1 || a.stash_type == 11, ErrorCode::kUnsupported,
                 "{}: stash_type {} is not supported (1 = float32, 11 = float64)", node.describe(),
                 a.stash_type);
  } else if (op == "GroupNormalization" || op == "GroupNorm") {
    a.num_groups = node.attr_int("num_groups");
    TANDEM_CHECK(a.num_groups >= 1, ErrorCode::kInvalidModel, "{}: num_groups must be >= 1, got {}",
                 node.describe(), a.num_groups);
    const std::string act = node.attr_string_or("activation", "");
    TANDEM_CHECK(act.empty() || act == "SiLU", ErrorCode::kInvalidModel,
                 "{}: activation '{}' is not supported (\"\" or \"SiLU\")", node.describe(), act);
    a.silu = act == "SiLU";
  } else if (op == "LpNormalization") {
    a.axis = node.attr_int_or("axis", -1);
    a.p = node.attr_int_or("p", 2);
    TANDEM_CHECK(a.p == 1 || a.p == 2, ErrorCode::kInvalidModel, "{}: p must be 1 or 2, got {}",
                 node.describe(), a.p);
  } else if (op == "LRN") {
    a.size = node.attr_int("size");
    TANDEM_CHECK(a.size >= 1, ErrorCode::kInvalidModel, "{}: size must be >= 1, got {}",
                 node.describe(), a.size);
    a.alpha = node.attr_float_or("alpha", 1e-4f);
    a.beta = node.attr_float_or("beta", 0.75f);
    a.bias = node.attr_float_or("bias", 1.0f);
  } else if (op == "MeanVarianceNormalization") {
    a.axes = node.attr_ints_or("axes", {0, 2, 3});
  }
  return a;
}

namespace {

bool is_float(DataType t) {
  return t == DataType::kFloat32 || t == DataType::kFloat64;
}

void check_float_input(const InferContext& ctx, size_t i) {
  if (!ctx.has_input(i)) return;
  DataType t = ctx.input(i).dtype;
  TANDEM_CHECK(is_float(t), ErrorCode::kUnsupported,
               "{}: input {} has dtype {}, which is not supported (float32/float64 only)",
               ctx.node.describe(), i, dtype_name(t));
}

// Checks that input i holds `count` elements (any shape with that many, e.g. [C] or [C,1,1]).
void check_numel(const InferContext& ctx, size_t i, int64_t count, const char* what) {
  if (!ctx.has_input(i)) return;
  const Shape& s = ctx.input(i).shape;
  TANDEM_CHECK(shape_numel(s) == count, ErrorCode::kInvalidModel,
               "{}: {} has shape {}, expected {} elements", ctx.node.describe(), what, shape_str(s),
               count);
}

void check_rank_at_least(const InferContext& ctx, size_t rank) {
  TANDEM_CHECK(ctx.input(0).shape.size() >= rank, ErrorCode::kInvalidModel,
               "{}: input X has shape {}, expected rank >= {}", ctx.node.describe(),
               shape_str(ctx.input(0).shape), rank);
}

std::vector<TensorType> infer_batch_norm(const InferContext& ctx, const NormAttrs& a) {
  const Node& node = ctx.node;
  for (size_t i = 0; i < 5; ++i) check_float_input(ctx, i);
  check_rank_at_least(ctx, 2);
  // Training mode (opset >= 14, training_mode = 1) normalises with the batch's statistics and
  // gives the updated running mean and variance as outputs 1 and 2. Earlier opsets asked for it
  // by wiring their five statistics outputs, a form Tandem refuses.
  TANDEM_CHECK(!a.training || node.opset >= 14, ErrorCode::kUnsupported,
               "{}: training mode before opset 14 (statistics outputs) is not supported",
               node.describe());
  const Shape& x = ctx.input(0).shape;
  const int64_t c = x[1];
  // Opset < 9 with spatial=0 has per-element statistics of shape [C, D1, ...].
  int64_t count = c;
  // The product of the dims after N, not numel / N: N may be 0.
  if (a.per_element_stats) count = shape_numel(Shape(x.begin() + 1, x.end()));
  const char* names[] = {"", "scale", "B", "mean", "var"};
  for (size_t i = 1; i < 5; ++i) check_numel(ctx, i, count, names[i]);
  std::vector<TensorType> out{{ctx.input(0).dtype, x}};
  // The running mean and variance (training mode; placeholders, never computed, otherwise).
  for (size_t i = 1; i < node.outputs.size(); ++i) out.push_back({ctx.input(3).dtype, {c}});
  return out;
}

std::vector<TensorType> infer_instance_norm(const InferContext& ctx, const NormAttrs&) {
  for (size_t i = 0; i < 3; ++i) check_float_input(ctx, i);
  check_rank_at_least(ctx, 3);
  const int64_t c = ctx.input(0).shape[1];
  check_numel(ctx, 1, c, "scale");
  check_numel(ctx, 2, c, "B");
  return {{ctx.input(0).dtype, ctx.input(0).shape}};
}

std::vector<TensorType> infer_layer_norm(const InferContext& ctx, const NormAttrs& a) {
  const Node& node = ctx.node;
  for (size_t i = 0; i < 3; ++i) check_float_input(ctx, i);
  check_rank_at_least(ctx, 1);
  const Shape& x = ctx.input(0).shape;
  const int64_t rank = static_cast<int64_t>(x.size());
  const int64_t axis = normalize_axis(a.axis, rank, node);
  const Shape normalized(x.begin() + axis, x.end());
  // Scale and B broadcast (one way) to the normalized shape.
  for (size_t i = 1; i < 3; ++i) {
    if (!ctx.has_input(i)) continue;
    const Shape& s = ctx.input(i).shape;
    TANDEM_CHECK(broadcast_shapes(s, normalized, node) == normalized, ErrorCode::kInvalidModel,
                 "{}: {} of shape {} does not broadcast to the normalized shape {}",
                 node.describe(), i == 1 ? "Scale" : "B", shape_str(s), shape_str(normalized));
  }
  Shape stat(x.begin(), x.begin() + axis);
  stat.resize(x.size(), 1);
  const DataType stat_type = static_cast<DataType>(a.stash_type);
  return {{ctx.input(0).dtype, x}, {stat_type, stat}, {stat_type, stat}};
}

std::vector<TensorType> infer_group_norm(const InferContext& ctx, const NormAttrs& a) {
  const Node& node = ctx.node;
  for (size_t i = 0; i < 3; ++i) check_float_input(ctx, i);
  check_rank_at_least(ctx, 3);
  const int64_t c = ctx.input(0).shape[1];
  const int64_t groups = a.num_groups;
  TANDEM_CHECK(c % groups == 0, ErrorCode::kInvalidModel,
               "{}: num_groups {} must be >= 1 and divide the {} channels", node.describe(), groups,
               c);
  // Opset 18 has per-group scale/bias, opset 21 per-channel: accept either.
  for (size_t i = 1; i < 3; ++i) {
    const int64_t n = shape_numel(ctx.input(i).shape);
    TANDEM_CHECK(n == groups || n == c, ErrorCode::kInvalidModel,
                 "{}: {} has shape {}, expected [{}] (num_groups) or [{}] (channels)",
                 node.describe(), i == 1 ? "scale" : "bias", shape_str(ctx.input(i).shape), groups,
                 c);
  }
  return {{ctx.input(0).dtype, ctx.input(0).shape}};
}

// GroupNorm(X, scale?, bias?), attributes num_groups, epsilon, activation ("" or "SiLU"): the
// fused form of torch's GroupNorm export (fuse_group_norm.cc), with exactly its semantics:
//   Y = InstanceNormalization(Reshape(X, [0, num_groups, -1]), ones, zeros, epsilon)
//   Y = Reshape(Y, Shape(X)) * scale + bias, then Y * Sigmoid(Y) for "SiLU".
// Each sample is cut into num_groups equal contiguous chunks, each normalized on its own; scale
// and bias broadcast numpy-style (torch gives them as [C, 1, 1]).
std::vector<TensorType> infer_group_norm_fused(const InferContext& ctx, const NormAttrs& a) {
  const Node& node = ctx.node;
  for (size_t i = 0; i < 3; ++i) check_float_input(ctx, i);
  const Shape& x = ctx.input(0).shape;
  check_rank_at_least(ctx, 1);
  const int64_t groups = a.num_groups;
  const int64_t per_sample = x[0] > 0 ? shape_numel(x) / x[0] : 0;
  TANDEM_CHECK(per_sample % groups == 0, ErrorCode::kInvalidArgument,
               "{}: X of shape {} cannot be cut into {} groups per sample", node.describe(),
               shape_str(x), groups);
  std::vector<Shape> shapes{x};
  for (size_t i = 1; i < 3; ++i)
    if (ctx.has_input(i)) shapes.push_back(ctx.input(i).shape);
  return {{ctx.input(0).dtype, broadcast_shapes(shapes, node)}};
}

std::vector<TensorType> infer_lp_norm(const InferContext& ctx, const NormAttrs& a) {
  const Node& node = ctx.node;
  check_float_input(ctx, 0);
  const int64_t rank = static_cast<int64_t>(ctx.input(0).shape.size());
  TANDEM_CHECK(rank >= 1, ErrorCode::kInvalidModel, "{}: input must have rank >= 1",
               node.describe());
  normalize_axis(a.axis, rank, node);
  return {{ctx.input(0).dtype, ctx.input(0).shape}};
}

std::vector<TensorType> infer_lrn(const InferContext& ctx, const NormAttrs&) {
  check_float_input(ctx, 0);
  check_rank_at_least(ctx, 3);
  return {{ctx.input(0).dtype, ctx.input(0).shape}};
}

std::vector<TensorType> infer_mvn(const InferContext& ctx, const NormAttrs& a) {
  const Node& node = ctx.node;
  check_float_input(ctx, 0);
  const int64_t rank = static_cast<int64_t>(ctx.input(0).shape.size());
  for (int64_t axis : a.axes) normalize_axis(axis, rank, node);
  return {{ctx.input(0).dtype, ctx.input(0).shape}};
}

}  // namespace

void register_normalization_schemas(SchemaRegistry& r) {
  r.add({"BatchNormalization", 5, 5, with_attrs(infer_batch_norm)});
  r.add({"InstanceNormalization", 3, 3, with_attrs(infer_instance_norm)});
  r.add({"LayerNormalization", 1, 3, with_attrs(infer_layer_norm)});
  r.add({"GroupNormalization", 3, 3, with_attrs(infer_group_norm)});
  r.add({"GroupNorm", 1, 3, with_attrs(infer_group_norm_fused), kFusedDomain});
  r.add({"LpNormalization", 1, 1, with_attrs(infer_lp_norm)});
  r.add({"LRN", 1, 1, with_attrs(infer_lrn)});
  r.add({"MeanVarianceNormalization", 1, 1, with_attrs(infer_mvn)});
}

}  // namespace tandem

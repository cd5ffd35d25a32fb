// Schemas of the resize family: Resize (opsets 10, 11, 13, 18) and Upsample (opsets 7, 9).
//
// The output shape depends on the *values* of the scales or sizes input, so inference needs them
// (require_value). Input layout by opset:
//   Upsample-7: X, attribute scales.    Upsample-9, Resize-10: X, scales.
//   Resize-11+: X, roi, scales, sizes (Resize-13 makes roi and scales optional).
// Resize-18 adds `axes` (scales/sizes cover only those axes) and keep_aspect_ratio_policy.
#include "ops/resize.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

// floor(v) as an output dim, or an error naming the node and the axis when v is NaN, infinite,
// negative or 2^63 or more (a cast of such a double to int64 is undefined behaviour).
int64_t resized_dim(double v, const Node& node, int64_t axis, int64_t in, double scale) {
  v = std::floor(v);
  TANDEM_CHECK(v >= 0 && v < 0x1p63, ErrorCode::kInvalidArgument,
               "{}: axis {} of size {} resized by {} gives {} elements, not a valid size",
               node.describe(), axis, in, scale, v);
  return static_cast<int64_t>(v);
}

// The axes that scales/sizes refer to: `axes` (Resize-18) or all of them.
std::vector<int64_t> resize_axes(const Node& node, int64_t rank) {
  std::vector<int64_t> axes;
  if (node.op_type == "Resize" && node.opset >= 18 && node.has_attr("axes")) {
    for (int64_t a : node.attr_ints("axes")) axes.push_back(normalize_axis(a, rank, node));
  } else {
    for (int64_t a = 0; a < rank; ++a) axes.push_back(a);
  }
  return axes;
}

Shape shape_from_scales(const Node& node, const Shape& x, const std::vector<double>& scales) {
  const std::vector<int64_t> axes = resize_axes(node, static_cast<int64_t>(x.size()));
  TANDEM_CHECK(scales.size() == axes.size(), ErrorCode::kInvalidModel,
               "{}: scales has {} values, expected {} (one per {})", node.describe(), scales.size(),
               axes.size(), axes.size() == x.size() ? "input axis" : "axis in axes");
  Shape out = x;
  for (size_t i = 0; i < axes.size(); ++i) {
    TANDEM_CHECK(scales[i] > 0 && std::isfinite(scales[i]), ErrorCode::kInvalidArgument,
                 "{}: scales must be positive, got {}", node.describe(), fmt::join(scales, ","));
    out[axes[i]] =
        resized_dim(double(x[axes[i]]) * scales[i], node, axes[i], x[axes[i]], scales[i]);
  }
  return out;
}

Shape shape_from_sizes(const Node& node, const Shape& x, const std::vector<int64_t>& sizes) {
  const std::vector<int64_t> axes = resize_axes(node, static_cast<int64_t>(x.size()));
  TANDEM_CHECK(sizes.size() == axes.size(), ErrorCode::kInvalidModel,
               "{}: sizes has {} values, expected {}", node.describe(), sizes.size(), axes.size());
  for (int64_t s : sizes)
    TANDEM_CHECK(s >= 0, ErrorCode::kInvalidArgument, "{}: negative sizes {}", node.describe(),
                 shape_str(sizes));
  Shape out = x;
  const std::string policy = node.attr_string_or("keep_aspect_ratio_policy", "stretch");
  if (policy == "stretch" || node.opset < 18) {
    for (size_t i = 0; i < axes.size(); ++i) out[axes[i]] = sizes[i];
    return out;
  }
  TANDEM_CHECK(policy == "not_larger" || policy == "not_smaller", ErrorCode::kUnsupported,
               "{}: keep_aspect_ratio_policy '{}' is not supported", node.describe(), policy);
  // One scale for all the axes, the smallest (not_larger) or largest (not_smaller) of them.
  double scale = policy == "not_larger" ? INFINITY : 0.0;
  for (size_t i = 0; i < axes.size(); ++i) {
    const double s = double(sizes[i]) / double(x[axes[i]]);
    scale = policy == "not_larger" ? std::min(scale, s) : std::max(scale, s);
  }
  // An empty axis makes the scale infinite or NaN: resized_dim refuses what is not a size.
  for (int64_t a : axes) out[a] = resized_dim(scale * double(x[a]) + 0.5, node, a, x[a], scale);
  return out;
}

void check_modes(const Node& node) {
  const std::string mode = node.attr_string_or("mode", "nearest");
  TANDEM_CHECK(mode == "nearest" || mode == "linear" || mode == "bilinear" ||
                   (mode == "cubic" && node.op_type == "Resize" && node.opset >= 11),
               ErrorCode::kUnsupported, "{}: mode '{}' is not supported", node.describe(), mode);
  if (node.op_type != "Resize" || node.opset < 11) return;
  const std::string ct = node.attr_string_or("coordinate_transformation_mode", "half_pixel");
  TANDEM_CHECK(ct == "half_pixel" || ct == "pytorch_half_pixel" || ct == "align_corners" ||
                   ct == "asymmetric" || ct == "tf_half_pixel_for_nn" ||
                   ct == "tf_crop_and_resize" || ct == "half_pixel_symmetric",
               ErrorCode::kUnsupported, "{}: coordinate_transformation_mode '{}' is not supported",
               node.describe(), ct);
  const std::string nm = node.attr_string_or("nearest_mode", "round_prefer_floor");
  TANDEM_CHECK(
      nm == "round_prefer_floor" || nm == "round_prefer_ceil" || nm == "floor" || nm == "ceil",
      ErrorCode::kUnsupported, "{}: nearest_mode '{}' is not supported", node.describe(), nm);
}

void check_dtype(const Node& node, DataType t) {
  const std::string mode = node.attr_string_or("mode", "nearest");
  const bool is_float = t == DataType::kFloat32 || t == DataType::kFloat64;
  const bool is_int = t == DataType::kInt8 || t == DataType::kUInt8 || t == DataType::kInt32 ||
                      t == DataType::kInt64;
  TANDEM_CHECK(is_float || (is_int && mode == "nearest"), ErrorCode::kUnsupported,
               "{}: dtype {} is not supported with mode '{}' (float32/float64; integer types "
               "with nearest only)",
               node.describe(), dtype_name(t), mode);
}

std::vector<TensorType> infer_resize(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  check_modes(node);
  check_dtype(node, x.dtype);
  TANDEM_CHECK(!x.shape.empty(), ErrorCode::kInvalidModel, "{}: input X must not be a scalar",
               node.describe());
  if (node.opset < 11) {  // X, scales
    return {{x.dtype,
             shape_from_scales(node, x.shape, read_resize_floats(ctx.require_value(1), node))}};
  }
  // Sizes wins when it is given and not empty; otherwise scales must be.
  if (ctx.has_input(3) && shape_numel(ctx.input(3).shape) > 0) {
    TANDEM_CHECK(!ctx.has_input(2) || shape_numel(ctx.input(2).shape) == 0,
                 ErrorCode::kInvalidModel, "{}: only one of scales and sizes may be given",
                 node.describe());
    return {
        {x.dtype, shape_from_sizes(node, x.shape, tensor_to_int64s(ctx.require_value(3), node))}};
  }
  TANDEM_CHECK(ctx.has_input(2) && shape_numel(ctx.input(2).shape) > 0, ErrorCode::kInvalidModel,
               "{}: one of scales and sizes must be given", node.describe());
  return {
      {x.dtype, shape_from_scales(node, x.shape, read_resize_floats(ctx.require_value(2), node))}};
}

std::vector<TensorType> infer_upsample(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  check_modes(node);
  check_dtype(node, x.dtype);
  std::vector<double> scales;
  if (node.opset < 9) {
    for (float s : node.attr_floats_or("scales", {})) scales.push_back(s);
  } else {
    scales = read_resize_floats(ctx.require_value(1), node);
  }
  for (double s : scales)
    TANDEM_CHECK(s >= 1, ErrorCode::kInvalidModel, "{}: Upsample scales must be >= 1, got {}",
                 node.describe(), fmt::join(scales, ","));
  return {{x.dtype, shape_from_scales(node, x.shape, scales)}};
}

}  // namespace

void register_resize_schemas(SchemaRegistry& r) {
  r.add({"Resize", 1, 4, infer_resize});
  r.add({"Upsample", 1, 2, infer_upsample});
}

}  // namespace tandem

// Schemas of the detection family: NonMaxSuppression (with its selection, see detection.h),
// RoiAlign and GridSample.
#include "ops/detection.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

DetectionAttrs DetectionAttrs::parse(const Node& node) {
  DetectionAttrs a;
  if (node.op_type == "RoiAlign") {
    a.mode = node.attr_string_or("mode", "avg");
    TANDEM_CHECK(a.mode == "avg" || a.mode == "max", ErrorCode::kInvalidModel,
                 "{}: unknown mode '{}'", node.describe(), a.mode);
    a.output_height = node.attr_int_or("output_height", 1);
    a.output_width = node.attr_int_or("output_width", 1);
    a.spatial_scale = node.attr_float_or("spatial_scale", 1.0f);
    a.sampling_ratio = node.attr_int_or("sampling_ratio", 0);
    // Each output bin averages sampling_ratio^2 samples (kMaxRoiAlignSamplingRatio).
    TANDEM_CHECK(a.sampling_ratio >= 0 && a.sampling_ratio <= kMaxRoiAlignSamplingRatio,
                 ErrorCode::kInvalidModel, "{}: sampling_ratio {} must be in 0..{}",
                 node.describe(), a.sampling_ratio, kMaxRoiAlignSamplingRatio);
    a.half_pixel = node.opset >= 16 && node.attr_string_or("coordinate_transformation_mode",
                                                           "half_pixel") == "half_pixel";
  } else if (node.op_type == "GridSample") {
    a.mode = node.attr_string_or("mode", "bilinear");
    a.padding_mode = node.attr_string_or("padding_mode", "zeros");
    a.align_corners = node.attr_int_or("align_corners", 0) != 0;
    TANDEM_CHECK(a.mode == "bilinear" || a.mode == "nearest" || a.mode == "bicubic",
                 ErrorCode::kUnsupported, "{}: mode '{}' is not supported", node.describe(),
                 a.mode);
    TANDEM_CHECK(
        a.padding_mode == "zeros" || a.padding_mode == "border" || a.padding_mode == "reflection",
        ErrorCode::kUnsupported, "{}: padding_mode '{}' is not supported", node.describe(),
        a.padding_mode);
  }
  return a;
}

namespace {

// Box as [y1, x1, y2, x2] with y1 <= y2, x1 <= x2.
std::array<double, 4> corners(const float* b, bool center_point) {
  if (center_point) {  // [x_center, y_center, width, height]
    return {b[1] - b[3] / 2, b[0] - b[2] / 2, b[1] + b[3] / 2, b[0] + b[2] / 2};
  }
  return {std::min(b[0], b[2]), std::min(b[1], b[3]), std::max(b[0], b[2]), std::max(b[1], b[3])};
}

double iou(const std::array<double, 4>& a, const std::array<double, 4>& b) {
  double area_a = (a[2] - a[0]) * (a[3] - a[1]), area_b = (b[2] - b[0]) * (b[3] - b[1]);
  if (area_a <= 0 || area_b <= 0) return 0;
  double ih = std::min(a[2], b[2]) - std::max(a[0], b[0]);
  double iw = std::min(a[3], b[3]) - std::max(a[1], b[1]);
  if (ih <= 0 || iw <= 0) return 0;
  double inter = ih * iw;
  return inter / (area_a + area_b - inter);
}

std::vector<TensorType> infer_nms(const InferContext& ctx) {
  const Node& node = ctx.node;
  std::vector<const Tensor*> opt(3, nullptr);
  for (size_t i = 2; i < 5; ++i)
    if (ctx.has_input(i)) opt[i - 2] = &ctx.require_value(i);
  auto rows =
      non_max_suppression(node, ctx.require_value(0), ctx.require_value(1), opt[0], opt[1], opt[2]);
  return {{DataType::kInt64, {static_cast<int64_t>(rows.size()), 3}}};
}

std::vector<TensorType> infer_roi_align(const InferContext& ctx, const DetectionAttrs& a) {
  const Node& node = ctx.node;
  ctx.float_input(0);
  const Shape& x = ctx.input(0).shape;
  const Shape& rois = ctx.input(1).shape;
  TANDEM_CHECK(
      x.size() == 4 && rois.size() == 2 && rois[1] == 4 && ctx.input(2).shape == Shape{rois[0]},
      ErrorCode::kInvalidArgument,
      "{}: expected X [N,C,H,W], rois [R,4], batch_indices [R]; got {}, {}, {}", node.describe(),
      shape_str(x), shape_str(rois), shape_str(ctx.input(2).shape));
  return {{ctx.input(0).dtype, {rois[0], x[1], a.output_height, a.output_width}}};
}

std::vector<TensorType> infer_grid_sample(const InferContext& ctx, const DetectionAttrs&) {
  const Node& node = ctx.node;
  ctx.float_input(0);
  const Shape& x = ctx.input(0).shape;
  const Shape& grid = ctx.input(1).shape;
  TANDEM_CHECK(x.size() == 4 && grid.size() == 4 && grid[0] == x[0] && grid[3] == 2,
               ErrorCode::kUnsupported,
               "{}: expected X [N,C,H,W] and grid [N,Hout,Wout,2] (2-D only); got {} and {}",
               node.describe(), shape_str(x), shape_str(grid));
  return {{ctx.input(0).dtype, {x[0], x[1], grid[1], grid[2]}}};
}

}  // namespace

// Per batch and class: boxes scoring above score_threshold, best first (ties: lower index
// first), each kept unless its IoU with an already kept box exceeds iou_threshold, at most
// max_output_boxes_per_class of them.
std::vector<std::array<int64_t, 3>> non_max_suppression(const Node& node, const Tensor& boxes,
                                                        const Tensor& scores,
                                                        const Tensor* max_per_class,
                                                        const Tensor* iou_threshold,
                                                        const Tensor* score_threshold) {
  TANDEM_CHECK(boxes.dtype() == DataType::kFloat32 && scores.dtype() == DataType::kFloat32,
               ErrorCode::kUnsupported, "{}: boxes and scores must be float32, got {} and {}",
               node.describe(), dtype_name(boxes.dtype()), dtype_name(scores.dtype()));
  TANDEM_CHECK(boxes.rank() == 3 && boxes.dim(2) == 4 && scores.rank() == 3 &&
                   scores.dim(0) == boxes.dim(0) && scores.dim(2) == boxes.dim(1),
               ErrorCode::kInvalidArgument,
               "{}: expected boxes [B,N,4] and scores [B,C,N], got {} and {}", node.describe(),
               shape_str(boxes.shape()), shape_str(scores.shape()));
  // An int64 tensor in ONNX, often INT64_MAX for "no limit": read as a double, that is 2^63,
  // whose cast back to int64 is undefined, so such values saturate (and NaN selects nothing).
  int64_t max_out = 0;
  if (max_per_class) {
    const double v = tensor_scalar_as_double(*max_per_class, node);
    max_out = v >= 0x1p63 ? INT64_MAX : v > 0 ? static_cast<int64_t>(v) : 0;
  }
  const double iou_max = iou_threshold ? tensor_scalar_as_double(*iou_threshold, node) : 0;
  const bool has_score_min = score_threshold != nullptr;
  const double score_min = has_score_min ? tensor_scalar_as_double(*score_threshold, node) : 0;
  const bool center = node.attr_int_or("center_point_box", 0) != 0;
  const int64_t nb = boxes.dim(0), n = boxes.dim(1), nc = scores.dim(1);
  std::vector<std::array<int64_t, 3>> rows;
  for (int64_t b = 0; b < nb; ++b) {
    for (int64_t c = 0; c < nc; ++c) {
      const float* s = scores.data<float>() + (b * nc + c) * n;
      std::vector<int64_t> cand;
      for (int64_t i = 0; i < n; ++i)
        if (!has_score_min || s[i] > score_min) cand.push_back(i);
      std::stable_sort(cand.begin(), cand.end(), [&](int64_t a, int64_t z) { return s[a] > s[z]; });
      std::vector<std::array<double, 4>> kept;
      for (int64_t i : cand) {
        if (static_cast<int64_t>(kept.size()) >= max_out) break;
        auto box = corners(boxes.data<float>() + (b * n + i) * 4, center);
        bool suppressed = false;
        for (const auto& k : kept) suppressed = suppressed || iou(k, box) > iou_max;
        if (suppressed) continue;
        kept.push_back(box);
        rows.push_back({b, c, i});
      }
    }
  }
  return rows;
}

void register_detection_schemas(SchemaRegistry& r) {
  r.add({"NonMaxSuppression", 2, 5, infer_nms, ""});
  r.add({"RoiAlign", 3, 3, with_attrs(infer_roi_align), ""});
  r.add({"GridSample", 2, 2, with_attrs(infer_grid_sample), ""});
}

}  // namespace tandem

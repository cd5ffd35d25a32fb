// The geometry of Resize / Upsample (see ops/resize.h), shared by the reference kernel and the
// CPU backend's.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/resize.h"
#include "ops/shape_utils.h"

namespace tandem {

ResizeAttrs read_resize_attrs(const Node& node) {
  ResizeAttrs a;
  a.mode = node.attr_string_or("mode", "nearest");
  if (a.mode == "bilinear") a.mode = "linear";  // Upsample-7's spelling
  if (node.op_type == "Resize" && node.opset >= 11) {
    a.coord = node.attr_string_or("coordinate_transformation_mode", "half_pixel");
    a.nearest = node.attr_string_or("nearest_mode", "round_prefer_floor");
    a.cubic_a = node.attr_float_or("cubic_coeff_a", -0.75f);
    a.exclude_outside = node.attr_int_or("exclude_outside", 0) != 0;
    a.extrapolation = node.attr_float_or("extrapolation_value", 0.0f);
    a.antialias = node.opset >= 18 && node.attr_int_or("antialias", 0) != 0;
  }
  return a;
}

std::vector<double> read_resize_floats(const Tensor& t, const Node& node) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  if (t.dtype() == DataType::kFloat32) {
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.data<float>()[i];
  } else if (t.dtype() == DataType::kFloat64) {
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = t.data<double>()[i];
  } else {
    raise(ErrorCode::kUnsupported, "{}: scales and roi must be float32 or float64, got {}",
          node.describe(), dtype_name(t.dtype()));
  }
  return v;
}

namespace {

double cubic_kernel(double s, double a) {
  s = std::abs(s);
  if (s <= 1) return ((a + 2) * s - (a + 3)) * s * s + 1;
  if (s < 2) return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a;
  return 0;
}

// Maps output position x to the input coordinate, per the coordinate transformation mode.
// `length` is scale * in (the reference's resized length, fractional when scales are given).
double original_coordinate(const ResizeAttrs& a, int64_t x, int64_t in, int64_t out, double scale,
                           double roi_start, double roi_end) {
  const double length = scale * double(in);
  const double xr = double(x);
  if (a.coord == "half_pixel") return (xr + 0.5) / scale - 0.5;
  if (a.coord == "half_pixel_symmetric") {
    const double adjustment = double(out) / length;
    const double offset = double(in) / 2 * (1 - adjustment);
    return offset + (xr + 0.5) / scale - 0.5;
  }
  if (a.coord == "pytorch_half_pixel") return out > 1 ? (xr + 0.5) / scale - 0.5 : 0.0;
  if (a.coord == "align_corners") return length == 1 ? 0.0 : xr * double(in - 1) / (length - 1);
  if (a.coord == "tf_half_pixel_for_nn") return (xr + 0.5) / scale;
  if (a.coord == "tf_crop_and_resize") {
    if (length == 1) return 0.5 * (roi_start + roi_end) * double(in - 1);
    return roi_start * double(in - 1) + xr * (roi_end - roi_start) * double(in - 1) / (length - 1);
  }
  return xr / scale;  // asymmetric
}

ResizeAxisTaps axis_taps(const Node& node, int64_t axis, const ResizeAttrs& a, int64_t in,
                         int64_t out, double scale, double roi_start, double roi_end) {
  ResizeAxisTaps t;
  t.taps.resize(out);
  t.outside.assign(out, 0);
  for (int64_t x = 0; x < out; ++x) {
    const double xo = original_coordinate(a, x, in, out, scale, roi_start, roi_end);
    // Written so that a NaN coordinate (from a NaN roi) counts as outside too.
    if (a.coord == "tf_crop_and_resize" && !(xo >= 0 && xo <= double(in - 1))) {
      t.outside[x] = 1;
      continue;
    }
    // The taps below cast floor(xo) to int64: scales and roi are values from the file, and a
    // coordinate that is NaN or far outside the input would make that cast undefined.
    TANDEM_CHECK(std::abs(xo) < 0x1p62, ErrorCode::kInvalidArgument,
                 "{}: output position {} of axis {} maps to input coordinate {} (input size {}, "
                 "scale {})",
                 node.describe(), x, axis, xo, in, scale);
    std::vector<ResizeTap>& taps = t.taps[x];
    const double base = std::floor(xo), frac = xo - base;
    if (a.mode == "nearest") {
      double pick;
      if (a.nearest == "legacy") {
        pick = scale < 1 ? std::ceil(xo) : base;  // onnxruntime's rule for the old ops
      } else if (frac == 0) {
        pick = base;
      } else if (a.nearest == "round_prefer_floor") {
        pick = frac <= 0.5 ? base : base + 1;
      } else if (a.nearest == "round_prefer_ceil") {
        pick = frac < 0.5 ? base : base + 1;
      } else if (a.nearest == "floor") {
        pick = base;
      } else {
        pick = base + 1;  // ceil
      }
      taps.push_back({std::clamp<int64_t>(static_cast<int64_t>(pick), 0, in - 1), 1.0});
      continue;
    }
    // Linear and cubic kernels; with antialias a downscale stretches the kernel by 1/scale.
    const double s = a.antialias && scale < 1 ? scale : 1.0;
    const bool cubic = a.mode == "cubic";
    // An antialiased downscale by s reads about 4 / s taps: refuse a scale so small that their
    // count would not fit (an output that small is empty, so only a caller that passes another
    // output shape than the scale gives gets here).
    const double reach = std::floor((cubic ? -2.0 : -1.0) / s);
    TANDEM_CHECK(reach > -0x1p31, ErrorCode::kInvalidArgument,
                 "{}: the antialiased scale {} of axis {} is too small", node.describe(), scale,
                 axis);
    const int64_t first = static_cast<int64_t>(reach) + 1;
    const int64_t last = (cubic ? 2 : 1) - first;  // inclusive
    double sum = 0;
    for (int64_t i = first; i <= last; ++i) {
      const double arg = (double(i) - frac) * s;
      double w = cubic ? cubic_kernel(arg, a.cubic_a) : std::max(0.0, 1 - std::abs(arg));
      const int64_t idx = static_cast<int64_t>(base) + i;
      if (idx < 0 || idx >= in) {
        if (a.exclude_outside) w = 0;
      }
      sum += w;
      taps.push_back({std::clamp<int64_t>(idx, 0, in - 1), w});
    }
    // The plain kernels sum to 1 already; renormalise only when taps were dropped or stretched.
    if ((a.exclude_outside || s != 1.0) && sum != 0) {
      for (ResizeTap& tap : taps) tap.weight /= sum;
    }
    std::erase_if(taps, [](const ResizeTap& tap) { return tap.weight == 0; });
  }
  return t;
}

bool non_empty(std::span<const Tensor* const> inputs, size_t i) {
  return i < inputs.size() && inputs[i] && inputs[i]->numel() > 0;
}

}  // namespace

ResizeGeometry resize_geometry(const Node& node, std::span<const Tensor* const> inputs,
                               const Shape& y) {
  const Tensor& x = *inputs[0];
  const int64_t rank = static_cast<int64_t>(x.rank());
  ResizeGeometry g;
  g.attrs = read_resize_attrs(node);
  const ResizeAttrs& a = g.attrs;
  const bool modern = node.op_type == "Resize" && node.opset >= 11;

  // The axes that scales/sizes/roi list (Resize-18 `axes`), and per-axis scale and roi.
  std::vector<int64_t> axes;
  if (modern && node.opset >= 18 && node.has_attr("axes")) {
    for (int64_t ax : node.attr_ints("axes")) axes.push_back(normalize_axis(ax, rank, node));
  } else {
    for (int64_t ax = 0; ax < rank; ++ax) axes.push_back(ax);
  }
  std::vector<double> scale(rank, 1.0), roi_start(rank, 0.0), roi_end(rank, 1.0);
  const size_t k = axes.size();
  if (modern && non_empty(inputs, 3)) {
    // Sizes: scale = out / in (one common scale when keeping the aspect ratio).
    const std::vector<int64_t> sizes = tensor_to_int64s(*inputs[3], node);
    TANDEM_CHECK(sizes.size() == k, ErrorCode::kInvalidModel, "{}: sizes has {} values, need {}",
                 node.describe(), sizes.size(), k);
    const std::string policy =
        node.opset >= 18 ? node.attr_string_or("keep_aspect_ratio_policy", "stretch") : "stretch";
    double common = policy == "not_larger" ? INFINITY : 0.0;
    for (size_t i = 0; i < k; ++i) {
      const double s = double(sizes[i]) / double(x.dim(axes[i]));
      scale[axes[i]] = s;
      common = policy == "not_larger" ? std::min(common, s) : std::max(common, s);
    }
    if (policy != "stretch")
      for (int64_t ax : axes) scale[ax] = common;
  } else {
    std::vector<double> scales;
    if (node.op_type == "Upsample" && node.opset < 9) {
      for (float s : node.attr_floats_or("scales", {})) scales.push_back(s);
    } else {
      const size_t at = modern ? 2 : 1;
      TANDEM_CHECK(non_empty(inputs, at), ErrorCode::kInvalidModel,
                   "{}: one of scales and sizes must be given", node.describe());
      scales = read_resize_floats(*inputs[at], node);
    }
    TANDEM_CHECK(scales.size() == k, ErrorCode::kInvalidModel, "{}: scales has {} values, need {}",
                 node.describe(), scales.size(), k);
    for (size_t i = 0; i < k; ++i) scale[axes[i]] = scales[i];
  }
  if (a.coord == "tf_crop_and_resize" && non_empty(inputs, 1)) {
    const std::vector<double> roi = read_resize_floats(*inputs[1], node);
    TANDEM_CHECK(roi.size() == 2 * k, ErrorCode::kInvalidModel, "{}: roi has {} values, need {}",
                 node.describe(), roi.size(), 2 * k);
    for (size_t i = 0; i < k; ++i) {
      roi_start[axes[i]] = roi[i];
      roi_end[axes[i]] = roi[k + i];
    }
  }
  for (int64_t ax = 0; ax < rank; ++ax)
    TANDEM_CHECK(scale[ax] > 0, ErrorCode::kInvalidArgument, "{}: scale of axis {} is {}",
                 node.describe(), ax, scale[ax]);
  if (shape_numel(y) == 0) return g;
  TANDEM_CHECK(x.numel() > 0, ErrorCode::kInvalidArgument,
               "{}: cannot resize an empty input {} to {}", node.describe(), shape_str(x.shape()),
               shape_str(y));

  for (int64_t ax = 0; ax < rank; ++ax) {
    g.axes.push_back(
        axis_taps(node, ax, a, x.dim(ax), y[ax], scale[ax], roi_start[ax], roi_end[ax]));
    for (char o : g.axes.back().outside) g.any_outside = g.any_outside || o;
  }
  return g;
}

}  // namespace tandem

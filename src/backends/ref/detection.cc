// Reference kernels of the detection family: NonMaxSuppression, RoiAlign, GridSample.
#include "ops/detection.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/value_io.h"
#include "core/error.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

void nms_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                std::span<Tensor* const> outputs) {
  auto opt = [&](size_t i) { return i < inputs.size() ? inputs[i] : nullptr; };
  auto rows = non_max_suppression(ctx.node, *inputs[0], *inputs[1], opt(2), opt(3), opt(4));
  TANDEM_CHECK(outputs[0]->dim(0) == static_cast<int64_t>(rows.size()), ErrorCode::kInternal,
               "{}: selected {} boxes, output sized {}", ctx.node.describe(), rows.size(),
               shape_str(outputs[0]->shape()));
  int64_t* y = outputs[0]->data<int64_t>();
  for (size_t i = 0; i < rows.size(); ++i)
    for (size_t k = 0; k < 3; ++k) y[i * 3 + k] = rows[i][k];
}

// RoiAlign: each output bin averages (or maxes) bilinear samples on a regular grid inside it.
// Samples more than one pixel outside the image count as 0. coordinate_transformation_mode
// half_pixel (opset 16 default) shifts the roi by -0.5 pixel; output_half_pixel (opset 10)
// does not and makes rois at least 1x1.
void roi_align_kernel(const KernelContext& ctx, const DetectionAttrs& attrs,
                      std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& xt = *inputs[0];
  const int64_t C = xt.dim(1), H = xt.dim(2), W = xt.dim(3);
  const int64_t R = inputs[1]->dim(0);
  const int64_t oh = outputs[0]->dim(2), ow = outputs[0]->dim(3);
  const std::vector<double> x = read_doubles(xt, node), rois = read_doubles(*inputs[1], node);
  const std::vector<int64_t> bidx = tensor_to_int64s(*inputs[2], node);
  const double scale = attrs.spatial_scale;
  const int64_t ratio = attrs.sampling_ratio;
  const bool is_max = attrs.mode == "max";
  const double offset = attrs.half_pixel ? 0.5 : 0;
  std::vector<double> y(static_cast<size_t>(outputs[0]->numel()), 0.0);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t b = bidx[static_cast<size_t>(r)];
    TANDEM_CHECK(b >= 0 && b < xt.dim(0), ErrorCode::kInvalidArgument,
                 "{}: batch index {} of roi {} is outside [0, {})", node.describe(), b, r,
                 xt.dim(0));
    const double* roi = &rois[static_cast<size_t>(r * 4)];
    const double x0 = roi[0] * scale - offset, y0 = roi[1] * scale - offset;
    double rw = roi[2] * scale - offset - x0, rh = roi[3] * scale - offset - y0;
    if (!attrs.half_pixel) rw = std::max(rw, 1.0), rh = std::max(rh, 1.0);
    const double bw = rw / static_cast<double>(ow), bh = rh / static_cast<double>(oh);
    // Adaptive grids (ratio 0) take ceil(extent / bins) samples a side, bounded like an explicit
    // sampling_ratio (kMaxRoiAlignSamplingRatio: a roi thousands of times the image would loop
    // for ever), and 1 for a NaN or negative extent (a double outside int64 must not be cast).
    auto adaptive = [&](double extent, int64_t bins) -> int64_t {
      if (ratio > 0) return ratio;
      const double g = std::ceil(extent / static_cast<double>(bins));
      return g >= 1
                 ? static_cast<int64_t>(std::min(g, static_cast<double>(kMaxRoiAlignSamplingRatio)))
                 : 1;
    };
    const int64_t gw = adaptive(rw, ow), gh = adaptive(rh, oh);
    const double count = static_cast<double>(std::max<int64_t>(gw * gh, 1));
    for (int64_t c = 0; c < C; ++c) {
      const double* img = &x[static_cast<size_t>((b * C + c) * H * W)];
      for (int64_t ph = 0; ph < oh; ++ph) {
        for (int64_t pw = 0; pw < ow; ++pw) {
          double acc = is_max ? -INFINITY : 0;
          bool any = false;
          for (int64_t iy = 0; iy < gh; ++iy) {
            for (int64_t ix = 0; ix < gw; ++ix) {
              double yy = y0 + static_cast<double>(ph) * bh +
                          (static_cast<double>(iy) + 0.5) * bh / static_cast<double>(gh);
              double xx = x0 + static_cast<double>(pw) * bw +
                          (static_cast<double>(ix) + 0.5) * bw / static_cast<double>(gw);
              double v[4] = {0, 0, 0, 0}, wt[4] = {0, 0, 0, 0};
              // Written so that a NaN coordinate counts as outside.
              if (yy >= -1.0 && yy <= static_cast<double>(H) && xx >= -1.0 &&
                  xx <= static_cast<double>(W)) {
                yy = std::max(yy, 0.0), xx = std::max(xx, 0.0);
                int64_t yl = static_cast<int64_t>(yy), xl = static_cast<int64_t>(xx), yh, xh;
                if (yl >= H - 1)
                  yh = yl = H - 1, yy = static_cast<double>(yl);
                else
                  yh = yl + 1;
                if (xl >= W - 1)
                  xh = xl = W - 1, xx = static_cast<double>(xl);
                else
                  xh = xl + 1;
                double ly = yy - static_cast<double>(yl), lx = xx - static_cast<double>(xl);
                wt[0] = (1 - ly) * (1 - lx), wt[1] = (1 - ly) * lx, wt[2] = ly * (1 - lx),
                wt[3] = ly * lx;
                v[0] = img[yl * W + xl], v[1] = img[yl * W + xh], v[2] = img[yh * W + xl],
                v[3] = img[yh * W + xh];
              }
              if (is_max) {  // as onnxruntime: the largest weighted corner of each sample
                for (int k = 0; k < 4; ++k) acc = std::max(acc, wt[k] * v[k]);
              } else {
                for (int k = 0; k < 4; ++k) acc += wt[k] * v[k];
              }
              any = true;
            }
          }
          y[static_cast<size_t>(((r * C + c) * oh + ph) * ow + pw)] =
              is_max ? (any ? acc : 0) : acc / count;
        }
      }
    }
  }
  write_doubles(*outputs[0], y, node);
}

// GridSample (as torch.grid_sampler, 2-D): grid values in [-1, 1] map to input pixels
// (align_corners: -1/1 are the corner pixels' centres, else the image's outer edges).
struct GridSampler {
  int64_t H, W;
  bool align;
  std::string pad;

  double unnormalize(double v, int64_t size) const {
    return align ? (v + 1) / 2 * static_cast<double>(size - 1)
                 : ((v + 1) * static_cast<double>(size) - 1) / 2;
  }
  static double reflect(double v, double twice_low, double twice_high) {
    if (twice_low == twice_high) return 0;
    const double mn = twice_low / 2, span = (twice_high - twice_low) / 2;
    v = std::abs(v - mn);
    const double extra = std::fmod(v, span);
    // The parity of the flips, in doubles: floor(v / span) need not fit int64.
    const bool even = std::fmod(std::floor(v / span), 2.0) == 0;
    return even ? extra + mn : span - extra + mn;
  }
  // Border clamps, reflection mirrors at the edges (then clamps) a coordinate.
  double pad_coord(double v, int64_t size) const {
    if (pad == "border") return std::clamp(v, 0.0, static_cast<double>(size - 1));
    if (pad == "reflection") {
      v = align ? reflect(v, 0, 2.0 * static_cast<double>(size - 1))
                : reflect(v, -1, 2.0 * static_cast<double>(size) - 1);
      return std::clamp(v, 0.0, static_cast<double>(size - 1));
    }
    return v;
  }
  // Pixel (iy, ix), 0 outside the image.
  static double at(const double* img, int64_t iy, int64_t ix, int64_t h, int64_t w) {
    return iy >= 0 && iy < h && ix >= 0 && ix < w ? img[iy * w + ix] : 0.0;
  }
  // A coordinate as a pixel index: -1 (outside) when it is NaN or too large for int64, whose
  // cast would be undefined (grid values come from the model's inputs).
  static int64_t index(double v) { return v > -1e18 && v < 1e18 ? static_cast<int64_t>(v) : -1; }
  static double cubic(double t, int k) {
    const double A = -0.75;
    auto near = [&](double s) { return ((A + 2) * s - (A + 3)) * s * s + 1; };
    auto far = [&](double s) { return ((A * s - 5 * A) * s + 8 * A) * s - 4 * A; };
    return k == 0 ? far(t + 1) : k == 1 ? near(t) : k == 2 ? near(1 - t) : far(2 - t);
  }
  double sample(const std::string& mode, const double* img, double gx, double gy) const {
    if (mode == "bicubic") {  // the padding applies to each of the 4x4 taps
      const double ix = unnormalize(gx, W), iy = unnormalize(gy, H);
      const double fx = std::floor(ix), fy = std::floor(iy);
      double sum = 0;
      for (int i = 0; i < 4; ++i) {
        for (int j = 0; j < 4; ++j) {
          double tx = pad_coord(fx - 1 + j, W), ty = pad_coord(fy - 1 + i, H);
          sum += cubic(iy - fy, i) * cubic(ix - fx, j) * at(img, index(ty), index(tx), H, W);
        }
      }
      return sum;
    }
    const double ix = pad_coord(unnormalize(gx, W), W), iy = pad_coord(unnormalize(gy, H), H);
    if (mode == "nearest") {
      return at(img, index(std::nearbyint(iy)), index(std::nearbyint(ix)), H, W);
    }
    const double x0 = std::floor(ix), y0 = std::floor(iy);
    const int64_t xi = index(x0), yi = index(y0);
    const double dx = ix - x0, dy = iy - y0;
    return (1 - dy) * ((1 - dx) * at(img, yi, xi, H, W) + dx * at(img, yi, xi + 1, H, W)) +
           dy * ((1 - dx) * at(img, yi + 1, xi, H, W) + dx * at(img, yi + 1, xi + 1, H, W));
  }
};

void grid_sample_kernel(const KernelContext& ctx, const DetectionAttrs& attrs,
                        std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& xt = *inputs[0];
  const int64_t N = xt.dim(0), C = xt.dim(1), ho = outputs[0]->dim(2), wo = outputs[0]->dim(3);
  GridSampler gs{xt.dim(2), xt.dim(3), attrs.align_corners, attrs.padding_mode};
  const std::string& mode = attrs.mode;
  const std::vector<double> x = read_doubles(xt, node), grid = read_doubles(*inputs[1], node);
  std::vector<double> y(static_cast<size_t>(outputs[0]->numel()));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < ho * wo; ++i) {
        const double* g = &grid[static_cast<size_t>((n * ho * wo + i) * 2)];
        y[static_cast<size_t>((n * C + c) * ho * wo + i)] =
            gs.sample(mode, &x[static_cast<size_t>((n * C + c) * gs.H * gs.W)], g[0], g[1]);
      }
  write_doubles(*outputs[0], y, node);
}

}  // namespace

void register_detection_ref_kernels(KernelRegistry& r) {
  r.add("NonMaxSuppression", nms_kernel);
  r.add("RoiAlign", roi_align_kernel);
  r.add("GridSample", grid_sample_kernel);
}

}  // namespace tandem

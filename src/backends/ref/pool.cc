// Reference kernels of the pool family: MaxPool (with optional Indices), AveragePool, LpPool and
// the Global* pools.
//
// 1-D and 2-D pools run as 3-D ones with leading spatial axes of size 1. For every spatial axis
// the in-bounds input positions of each output position's window are listed up front; a window
// is then the cartesian product of three such lists, so padding never needs a branch in the
// inner loops. Work is split over (batch, channel) planes.
#include "ops/pool.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "backends/ref/layout.h"
#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

// For one spatial axis: per output position, the valid input positions of its window and how
// many taps fall inside input + padding (the AveragePool count_include_pad divisor).
struct AxisWindows {
  std::vector<std::vector<int64_t>> taps;
  std::vector<int64_t> padded_count;
};

struct PoolGeometry {
  int64_t planes = 0;  // batch * channels
  std::array<int64_t, 3> in{1, 1, 1}, out{1, 1, 1};
  std::array<AxisWindows, 3> axes;
};

PoolGeometry pool_geometry(const PoolAttrs& attrs, const Node& node, const Shape& x,
                           const Shape& y) {
  attrs.check(x, node);
  TANDEM_CHECK(y.size() == x.size(), ErrorCode::kInvalidModel,
               "{}: output shape {} does not fit input shape {}", node.describe(), shape_str(y),
               shape_str(x));
  const size_t n = x.size() - 2, off = 3 - n;
  PoolGeometry g;
  g.planes = x[0] * x[1];
  for (size_t a = 0; a < 3; ++a) {
    AxisWindows& w = g.axes[a];
    if (a < off) {  // a dummy axis: one position, one tap
      w.taps = {{0}};
      w.padded_count = {1};
      continue;
    }
    const size_t i = a - off;
    const int64_t in = x[2 + i], out = y[2 + i];
    const PoolAxis axis = attrs.axis(i, n, in, out);
    const int64_t s = axis.stride, d = axis.dilation, pad_begin = axis.pad_begin,
                  pad_end = axis.pad_end;
    g.in[a] = in;
    g.out[a] = out;
    w.taps.resize(out);
    w.padded_count.resize(out);
    for (int64_t o = 0; o < out; ++o) {
      int64_t counted = 0;
      for (int64_t k = 0; k < axis.kernel; ++k) {
        const int64_t pos = o * s - pad_begin + k * d;
        if (pos >= 0 && pos < in) w.taps[o].push_back(pos);
        if (pos < in + pad_end) ++counted;  // pos >= -pad_begin always holds
      }
      w.padded_count[o] = counted;
    }
  }
  return g;
}

// Runs fn(plane, out_index, window) for every output element; `window` holds the flat in-plane
// offsets of the window's valid input elements, in row-major order.
template <typename Fn>
void for_each_window(const KernelContext& ctx, const PoolGeometry& g, Fn&& fn) {
  ctx.pool.parallel_for(g.planes, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> window;
    for (int64_t p = begin; p < end; ++p) {
      int64_t o = 0;
      for (int64_t od = 0; od < g.out[0]; ++od) {
        for (int64_t oh = 0; oh < g.out[1]; ++oh) {
          for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o) {
            window.clear();
            for (int64_t id : g.axes[0].taps[od])
              for (int64_t ih : g.axes[1].taps[oh])
                for (int64_t iw : g.axes[2].taps[ow])
                  window.push_back((id * g.in[1] + ih) * g.in[2] + iw);
            const int64_t padded_count = g.axes[0].padded_count[od] * g.axes[1].padded_count[oh] *
                                         g.axes[2].padded_count[ow];
            fn(p, o, window, padded_count);
          }
        }
      }
    }
  });
}

void max_pool(const KernelContext& ctx, const PoolAttrs& attrs,
              std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  Tensor* indices = outputs.size() > 1 ? outputs[1] : nullptr;
  PoolGeometry g = pool_geometry(attrs, node, x.shape(), y.shape());
  const bool col_major = attrs.column_major_indices;
  const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
  const int64_t out_plane = g.out[0] * g.out[1] * g.out[2];
  dispatch_numeric(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    int64_t* id = indices ? indices->data<int64_t>() : nullptr;
    for_each_window(ctx, g, [&](int64_t p, int64_t o, const std::vector<int64_t>& window, int64_t) {
      const T* plane = xd + p * in_plane;
      T best = std::numeric_limits<T>::lowest();
      int64_t best_at = window.empty() ? 0 : window[0];
      for (int64_t at : window) {
        if (plane[at] > best) {  // strict: the first maximum wins
          best = plane[at];
          best_at = at;
        }
      }
      yd[p * out_plane + o] = best;
      if (id) {
        int64_t spatial = best_at;
        if (col_major) {  // the same position, numbered with the first spatial axis fastest
          const int64_t iw = best_at % g.in[2], ih = best_at / g.in[2] % g.in[1],
                        idd = best_at / (g.in[1] * g.in[2]);
          // Real axes only: a dummy leading axis has size 1 and contributes nothing.
          const size_t n = x.rank() - 2;
          if (n == 3) {
            spatial = idd + ih * g.in[0] + iw * g.in[0] * g.in[1];
          } else if (n == 2) {
            spatial = ih + iw * g.in[1];
          }
        }
        id[p * out_plane + o] = p * in_plane + spatial;
      }
    });
  });
}

// AveragePool and LpPool (Lp when p > 0).
void average_or_lp_pool(const KernelContext& ctx, const PoolAttrs& attrs,
                        std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs,
                        int64_t p_norm) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  PoolGeometry g = pool_geometry(attrs, node, x.shape(), y.shape());
  const bool include_pad = attrs.count_include_pad;
  const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
  const int64_t out_plane = g.out[0] * g.out[1] * g.out[2];
  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    for_each_window(
        ctx, g,
        [&](int64_t p, int64_t o, const std::vector<int64_t>& window, int64_t padded_count) {
          const T* plane = xd + p * in_plane;
          double acc = 0;
          if (p_norm > 0) {
            for (int64_t at : window) acc += std::pow(std::abs(double(plane[at])), double(p_norm));
            yd[p * out_plane + o] = static_cast<T>(std::pow(acc, 1.0 / double(p_norm)));
          } else {
            for (int64_t at : window) acc += plane[at];
            const int64_t count = include_pad ? padded_count : int64_t(window.size());
            yd[p * out_plane + o] = count > 0 ? static_cast<T>(acc / double(count)) : T(0);
          }
        });
  });
}

void average_pool(const KernelContext& ctx, const PoolAttrs& attrs,
                  std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  average_or_lp_pool(ctx, attrs, inputs, outputs, 0);
}

void lp_pool(const KernelContext& ctx, const PoolAttrs& attrs,
             std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  average_or_lp_pool(ctx, attrs, inputs, outputs, attrs.p);  // parse() checked p >= 1
}

// Global pools: one value per (batch, channel) plane.
enum class GlobalKind { kAverage, kMax, kLp };

void global_pool(const KernelContext& ctx, const PoolAttrs& attrs,
                 std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs,
                 GlobalKind kind) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const int64_t planes = x.dim(0) * x.dim(1);
  const int64_t size = planes > 0 ? x.numel() / planes : 0;
  const double p = double(attrs.p);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    ctx.pool.parallel_for(planes, [&](int64_t begin, int64_t end) {
      for (int64_t pl = begin; pl < end; ++pl) {
        const T* plane = xd + pl * size;
        if (kind == GlobalKind::kMax) {
          T best = std::numeric_limits<T>::lowest();
          for (int64_t i = 0; i < size; ++i) best = std::max(best, plane[i]);
          yd[pl] = best;
        } else if (kind == GlobalKind::kAverage) {
          double acc = 0;
          for (int64_t i = 0; i < size; ++i) acc += plane[i];
          yd[pl] = static_cast<T>(size > 0 ? acc / double(size) : 0.0);
        } else {
          double acc = 0;
          for (int64_t i = 0; i < size; ++i) acc += std::pow(std::abs(double(plane[i])), p);
          yd[pl] = static_cast<T>(std::pow(acc, 1.0 / p));
        }
      }
    });
  };
  if (kind == GlobalKind::kMax) {
    dispatch_numeric(x.dtype(), node, run);
  } else {
    dispatch_float(x.dtype(), node, run);
  }
}

void global_average_pool(const KernelContext& ctx, const PoolAttrs& attrs,
                         std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  global_pool(ctx, attrs, inputs, outputs, GlobalKind::kAverage);
}
void global_max_pool(const KernelContext& ctx, const PoolAttrs& attrs,
                     std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  global_pool(ctx, attrs, inputs, outputs, GlobalKind::kMax);
}
void global_lp_pool(const KernelContext& ctx, const PoolAttrs& attrs,
                    std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  global_pool(ctx, attrs, inputs, outputs, GlobalKind::kLp);
}

// MaxUnpool: Y starts zero; X[i] goes to the flat position I[i] (MaxPool's Indices) of the
// default output shape (in - 1) * stride + kernel - pads. An explicit, larger output_shape keeps
// those coordinates (the extra rows/columns stay zero).
void max_unpool(const KernelContext& ctx, const PoolAttrs& attrs,
                std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const int64_t* idx = inputs[1]->data<int64_t>();
  Tensor& y = *outputs[0];
  const Shape def = attrs.unpooled_shape(x.shape(), node);
  const int64_t def_numel = shape_numel(def);
  const std::vector<int64_t> def_strides = contiguous_strides(def);
  const std::vector<int64_t> y_strides = contiguous_strides(y.shape());
  const size_t es = dtype_size(x.dtype());
  for (int64_t i = 0; i < x.numel(); ++i) {
    TANDEM_CHECK(idx[i] >= 0 && idx[i] < def_numel, ErrorCode::kInvalidArgument,
                 "{}: index {} at position {} is outside the unpooled shape {}", node.describe(),
                 idx[i], i, shape_str(def));
    int64_t rest = idx[i], pos = 0;
    for (size_t d = 0; d < def.size(); ++d) {
      const int64_t coord = rest / def_strides[d];
      rest %= def_strides[d];
      TANDEM_CHECK(coord < y.dim(d), ErrorCode::kInvalidArgument,
                   "{}: output_shape {} is smaller than the unpooled shape {}", node.describe(),
                   shape_str(y.shape()), shape_str(def));
      pos += coord * y_strides[d];
    }
    std::memcpy(static_cast<char*>(y.raw()) + static_cast<size_t>(pos) * es,
                static_cast<const char*>(x.raw()) + static_cast<size_t>(i) * es, es);
  }
}

// A pool kernel run on a channels-last node (NHWC X and Y).
template <AttrComputeFn<PoolAttrs> kNchwPool>
void on_channels_first(const KernelContext& ctx, const PoolAttrs& attrs,
                       std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  run_on_channels_first(ctx, inputs, outputs,
                        [&](std::span<const Tensor* const> in, std::span<Tensor* const> out) {
                          kNchwPool(ctx, attrs, in, out);
                        });
}

}  // namespace

void register_pool_ref_kernels(KernelRegistry& r) {
  r.add("MaxPool", max_pool);
  r.add("AveragePool", average_pool);
  r.add("LpPool", lp_pool);
  r.add("GlobalAveragePool", global_average_pool);
  r.add("GlobalMaxPool", global_max_pool);
  r.add("GlobalLpPool", global_lp_pool);
  r.add("MaxUnpool", max_unpool);
  // The channels-last pools (ops/layout.h): the ONNX kernels on an NCHW copy.
  r.add("MaxPool", on_channels_first<max_pool>, kFusedDomain);
  r.add("AveragePool", on_channels_first<average_pool>, kFusedDomain);
  r.add("GlobalAveragePool", on_channels_first<global_average_pool>, kFusedDomain);
  r.add("GlobalMaxPool", on_channels_first<global_max_pool>, kFusedDomain);
}

}  // namespace tandem

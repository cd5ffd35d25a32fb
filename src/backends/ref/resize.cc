// Reference kernels of the resize family: Resize and Upsample.
//
// Interpolation is separable: for every axis and every output position along it we compute the
// input positions it reads and their weights ("taps"), following the ONNX coordinate transforms
// and interpolation kernels. An output element is then the weighted sum over the cartesian
// product of its per-axis taps. Nearest mode has one tap per axis and copies the value exactly.
#include "ops/resize.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "core/error.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

void resize(const KernelContext& ctx, std::span<const Tensor* const> inputs,
            std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const int64_t rank = static_cast<int64_t>(x.rank());
  const ResizeGeometry g = resize_geometry(node, inputs, y.shape());
  const ResizeAttrs& a = g.attrs;
  if (y.numel() == 0) return;
  const std::vector<ResizeAxisTaps>& taps = g.axes;
  const std::vector<int64_t> in_strides = contiguous_strides(x.shape());
  const int64_t row = y.dim(rank - 1), rows = y.numel() / row;

  dispatch_numeric(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    const bool nearest = a.mode == "nearest";
    TANDEM_CHECK(nearest || std::is_floating_point_v<T>, ErrorCode::kUnsupported,
                 "{}: mode '{}' needs a float input, got {}", node.describe(), a.mode,
                 dtype_name(x.dtype()));
    ctx.pool.parallel_for(
        rows,
        [&](int64_t begin, int64_t end) {
          std::vector<int64_t> idx(rank);
          for (int64_t r = begin; r < end; ++r) {
            for (int64_t d = rank - 1, rem = r; d-- > 0;) {  // index of the row's leading axes
              idx[d] = rem % y.dim(d);
              rem /= y.dim(d);
            }
            for (int64_t ow = 0; ow < row; ++ow) {
              idx[rank - 1] = ow;
              T& out = yd[r * row + ow];
              bool outside = false;
              for (int64_t d = 0; d < rank; ++d) outside = outside || taps[d].outside[idx[d]];
              if (outside) {
                out = static_cast<T>(a.extrapolation);
                continue;
              }
              if (nearest) {
                int64_t at = 0;
                for (int64_t d = 0; d < rank; ++d)
                  at += taps[d].taps[idx[d]][0].index * in_strides[d];
                out = xd[at];
                continue;
              }
              // Weighted sum over the product of the taps, one axis at a time.
              auto sum = [&](auto& self, int64_t d, int64_t at) -> double {
                if (d == rank) return double(xd[at]);
                double acc = 0;
                for (const ResizeTap& tap : taps[d].taps[idx[d]])
                  acc += tap.weight * self(self, d + 1, at + tap.index * in_strides[d]);
                return acc;
              };
              out = static_cast<T>(sum(sum, 0, 0));
            }
          }
        },
        row);
  });
}

}  // namespace

void register_resize_ref_kernels(KernelRegistry& r) {
  r.add("Resize", resize);
  r.add("Upsample", resize);
}

}  // namespace tandem

// Reference kernels of the softmax family: Softmax, LogSoftmax, Hardmax.
//
// The input is viewed as [outer, n, inner] (SoftmaxAttrs::rows, ops/softmax.h) and the op runs
// over each of the outer*inner rows of length n (stride inner).
#include "ops/softmax.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "core/error.h"
#include "core/half.h"

namespace tandem {

namespace {

enum class Mode { kSoftmax, kLogSoftmax, kHardmax };

template <typename T>
void softmax_rows(const KernelContext& ctx, Mode mode, const SoftmaxRows& v, const T* x, T* y) {
  ctx.pool.parallel_for(
      v.outer * v.inner,
      [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          int64_t o = r / v.inner, in = r % v.inner;
          const T* xr = x + o * v.n * v.inner + in;
          T* yr = y + o * v.n * v.inner + in;
          const int64_t s = v.inner;
          if (v.n == 0) continue;
          // Subtracting the row max keeps exp() from overflowing.
          int64_t arg = 0;
          T mx = xr[0];
          for (int64_t i = 1; i < v.n; ++i) {
            if (xr[i * s] > mx) {
              mx = xr[i * s];
              arg = i;
            }
          }
          if (mode == Mode::kHardmax) {
            for (int64_t i = 0; i < v.n; ++i) yr[i * s] = T(i == arg ? 1 : 0);
            continue;
          }
          // exp() in T (each value once), the sum in double.
          double sum = 0;
          for (int64_t i = 0; i < v.n; ++i) {
            T e = std::exp(xr[i * s] - mx);
            sum += static_cast<double>(e);
            if (mode == Mode::kSoftmax) yr[i * s] = e;
          }
          if (mode == Mode::kSoftmax) {
            const T inv = static_cast<T>(1.0 / sum);
            for (int64_t i = 0; i < v.n; ++i) yr[i * s] *= inv;
          } else {
            const T lse = static_cast<T>(std::log(sum));
            for (int64_t i = 0; i < v.n; ++i) yr[i * s] = (xr[i * s] - mx) - lse;
          }
        }
      },
      v.n * 4);
}

template <Mode kMode>
void softmax_kernel(const KernelContext& ctx, const SoftmaxAttrs& attrs,
                    std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const SoftmaxRows v = attrs.rows(x.shape(), ctx.node);
  if (x.dtype() == DataType::kFloat16) {
    // Computed in float32.
    std::vector<float> xf(static_cast<size_t>(x.numel())), yf(xf.size());
    for (size_t i = 0; i < xf.size(); ++i) xf[i] = half_to_float(x.data<uint16_t>()[i]);
    softmax_rows<float>(ctx, kMode, v, xf.data(), yf.data());
    for (size_t i = 0; i < yf.size(); ++i) y.data<uint16_t>()[i] = float_to_half(yf[i]);
    return;
  }
  dispatch_float(x.dtype(), ctx.node, [&](auto tag) {
    using T = decltype(tag);
    softmax_rows<T>(ctx, kMode, v, x.data<T>(), y.data<T>());
  });
}

}  // namespace

void register_softmax_ref_kernels(KernelRegistry& r) {
  r.add("Softmax", softmax_kernel<Mode::kSoftmax>);
  r.add("LogSoftmax", softmax_kernel<Mode::kLogSoftmax>);
  r.add("Hardmax", softmax_kernel<Mode::kHardmax>);
}

}  // namespace tandem

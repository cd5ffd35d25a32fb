// The CPU backend's Erf (float32) and Gelu (ONNX opset 20 and the fused com.tandem one fuse_gelu.cc
// makes) and the fused GeGLU (a * gelu(g) over the two halves of the last dim): hand-written vector
// loops (simd.h), float32, approximate = "none" (erf) or "tanh". Other dtypes, and GeGLU over an
// odd last dim, run on the reference kernel.
#include <algorithm>
#include <functional>
#include <memory>
#include <string>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "backends/cpu/simd.h"
#include "ops/activation.h"
#include "ops/schema.h"

// Vector helpers are always inlined into bodies compiled for their width (simd.h): the
// calling-convention note GCC gives for wide vectors does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace tandem::cpu {

namespace {

namespace sv = simd;

template <class V>
TANDEM_SIMD_INLINE V gelu_erf_v(V v) {
  return v * 0.5f * (1.0f + sv::erf(v * 0.70710678118654752f));
}
template <class V>
TANDEM_SIMD_INLINE V gelu_tanh_v(V v) {
  return v * 0.5f * (1.0f + sv::tanh(v * 0.79788456080286536f * (1.0f + 0.044715f * v * v)));
}
template <class V>
TANDEM_SIMD_INLINE V gelu_v(V v, bool tanh) {
  return tanh ? gelu_tanh_v(v) : gelu_erf_v(v);
}

// 0.5 x (1 + erf(x / sqrt(2))), or with tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))),
// over [0, n).
template <class V>
TANDEM_SIMD_INLINE void gelu_body(const float* x, float* y, int64_t n, bool tanh) {
  constexpr int64_t W = sv::lanes<V>;
  int64_t i = 0;
  for (; i + W <= n; i += W) sv::store(y + i, gelu_v(sv::load<V>(x + i), tanh));
  if (i < n) sv::store_partial(y + i, gelu_v(sv::load_partial<V>(x + i, n - i), tanh), n - i);
}
TANDEM_SIMD_DISPATCH(gelu, (const float* x, float* y, int64_t n, bool tanh), (x, y, n, tanh))

// GeGLU over `rows` rows of the last dim 2 * half: y[j] = x[j] * gelu(x[half + j]).
template <class V>
TANDEM_SIMD_INLINE void geglu_rows_body(const float* x, float* y, int64_t rows, int64_t half,
                                        bool tanh) {
  constexpr int64_t W = sv::lanes<V>;
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = x + r * 2 * half;
    const float* g = a + half;
    float* o = y + r * half;
    int64_t i = 0;
    for (; i + W <= half; i += W)
      sv::store(o + i, sv::load<V>(a + i) * gelu_v(sv::load<V>(g + i), tanh));
    if (i < half) {
      const V v =
          sv::load_partial<V>(a + i, half - i) * gelu_v(sv::load_partial<V>(g + i, half - i), tanh);
      sv::store_partial(o + i, v, half - i);
    }
  }
}
TANDEM_SIMD_DISPATCH(geglu_rows, (const float* x, float* y, int64_t rows, int64_t half, bool tanh),
                     (x, y, rows, half, tanh))

// erf(x) over [0, n): ONNX's Erf. simd::erf keeps NaN and gives +-1 at +-inf.
template <class V>
TANDEM_SIMD_INLINE void erf_loop_body(const float* x, float* y, int64_t n) {
  constexpr int64_t W = sv::lanes<V>;
  int64_t i = 0;
  for (; i + W <= n; i += W) sv::store(y + i, sv::erf(sv::load<V>(x + i)));
  if (i < n) sv::store_partial(y + i, sv::erf(sv::load_partial<V>(x + i, n - i)), n - i);
}
TANDEM_SIMD_DISPATCH(erf_loop, (const float* x, float* y, int64_t n), (x, y, n))

// One float32 value per element, computed by `loop` over a contiguous range (Erf, Gelu): chunks
// of 4096 values (whole vectors) spread over the threads, `cost` work units per value.
class VectorLoopKernel : public FallbackKernel {
 public:
  using Loop = std::function<void(const float* x, float* y, int64_t n)>;
  VectorLoopKernel(const Node& node, Loop loop, double cost)
      : FallbackKernel(node), loop_(std::move(loop)), cost_(cost) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor* x = inputs[0];
    Tensor* y = outputs[0];
    if (x->dtype() != DataType::kFloat32 || y->dtype() != DataType::kFloat32 ||
        x->numel() != y->numel()) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    const float* xd = x->data<float>();
    float* yd = y->data<float>();
    constexpr int64_t kChunk = 4096;
    const int64_t n = x->numel();
    parallel_for_work(ctx, (n + kChunk - 1) / kChunk, cost_ * kChunk,
                      [&](int64_t begin, int64_t end) {
                        const int64_t lo = begin * kChunk, hi = std::min(n, end * kChunk);
                        loop_(xd + lo, yd + lo, hi - lo);
                      });
  }

 private:
  Loop loop_;
  double cost_;
};

class GeGLUKernel : public FallbackKernel {
 public:
  GeGLUKernel(const Node& node, bool tanh) : FallbackKernel(node), tanh_(tanh) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor* x = inputs[0];
    Tensor* y = outputs[0];
    const int64_t d = x->rank() > 0 ? x->shape().back() : 0;
    if (x->dtype() != DataType::kFloat32 || y->dtype() != DataType::kFloat32 || d % 2 != 0 ||
        d == 0 || y->numel() * 2 != x->numel()) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    const int64_t half = d / 2, rows = x->numel() / d;
    const float* xd = x->data<float>();
    float* yd = y->data<float>();
    parallel_for_work(ctx, rows, 10.0 * d, [&](int64_t begin, int64_t end) {
      geglu_rows(xd + begin * d, yd + begin * half, end - begin, half, tanh_);
    });
  }

 private:
  bool tanh_;
};

// Declines (nullptr -> the reference backend) an input the graph shows is not float32. An
// approximate value the op does not define fails in ActivationAttrs::parse, naming the node.
std::unique_ptr<Kernel> make_gelu(const Node& node) {
  if (!node.has_input(0) || known_not_float32(node.inputs[0])) return nullptr;
  const bool tanh = ActivationAttrs::parse(node).tanh_approximation;
  return std::make_unique<VectorLoopKernel>(
      node, [tanh](const float* x, float* y, int64_t n) { gelu(x, y, n, tanh); }, 8.0);
}

}  // namespace

void register_gelu_kernels(KernelRegistry& r) {
  r.add("Erf", [](const Node& node) -> std::unique_ptr<Kernel> {
    if (!node.has_input(0) || known_not_float32(node.inputs[0])) return nullptr;
    return std::make_unique<VectorLoopKernel>(node, erf_loop, 6.0);
  });
  r.add("Gelu", make_gelu);
  r.add("Gelu", make_gelu, kFusedDomain);
  r.add(
      "GeGLU",
      [](const Node& node) -> std::unique_ptr<Kernel> {
        if (!node.has_input(0) || known_not_float32(node.inputs[0])) return nullptr;
        return std::make_unique<GeGLUKernel>(node, ActivationAttrs::parse(node).tanh_approximation);
      },
      kFusedDomain);
}

}  // namespace tandem::cpu

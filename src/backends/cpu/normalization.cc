// The CPU backend's InstanceNormalization, LayerNormalization and fused GroupNorm (com.tandem):
// hand-written vector loops (simd.h), float32.
//
// Each normalized span (a channel, a row, a group of channels) is read twice: once for its
// statistics, once to write y = (x - mean) * a + b with the per-channel (or per-element) a that
// folds 1 / sqrt(var + epsilon) and scale together; GroupNorm's SiLU is applied in the same
// write. Statistics are taken about the span's first element (so a large mean does not swamp the
// variance), summed in float vectors over blocks of 1024 values and across blocks in double.
// The spans are spread over the session's threads.
//
// What the fast path does not cover runs on the node's reference kernel: other dtypes,
// LayerNormalization with stash_type double or scale/bias that are not one value or one per
// normalized element, GroupNorm whose groups split channels or whose scale/bias are not per
// channel (the fused op broadcasts them numpy-style).
#include "ops/normalization.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "backends/cpu/simd.h"
#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

// Vector helpers are always inlined into bodies compiled for their width (simd.h): the
// calling-convention note GCC gives for wide vectors does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace tandem::cpu {

namespace {

namespace sv = simd;

struct Stats {
  float mean = 0, inv_std = 0;
};

// Mean and 1 / sqrt(var + eps) of x[0, n), biased variance, into *st.
template <class V>
TANDEM_SIMD_INLINE void span_stats_body(const float* x, int64_t n, double eps, Stats* st) {
  constexpr int64_t W = sv::lanes<V>;
  const float shift = n > 0 ? x[0] : 0.0f;
  const V sh = sv::splat<V>(shift);
  double s1 = 0, s2 = 0;
  int64_t i = 0;
  while (i < n) {
    const int64_t block_end = std::min(n, i + 1024);
    V a1{}, a2{}, b1{}, b2{};
    for (; i + 2 * W <= block_end; i += 2 * W) {
      const V v = sv::load<V>(x + i) - sh;
      const V w = sv::load<V>(x + i + W) - sh;
      a1 += v;
      a2 += v * v;
      b1 += w;
      b2 += w * w;
    }
    for (; i + W <= block_end; i += W) {
      const V v = sv::load<V>(x + i) - sh;
      a1 += v;
      a2 += v * v;
    }
    if (i < block_end) {
      const V v = sv::load_partial<V>(x + i, block_end - i, shift) - sh;
      a1 += v;
      a2 += v * v;
      i = block_end;
    }
    s1 += sv::reduce_add(a1 + b1);
    s2 += sv::reduce_add(a2 + b2);
  }
  *st = Stats{};
  if (n == 0) return;
  const double m1 = s1 / double(n);
  const double var = std::max(0.0, s2 / double(n) - m1 * m1);
  st->mean = static_cast<float>(shift + m1);
  st->inv_std = static_cast<float>(1.0 / std::sqrt(var + eps));
}
TANDEM_SIMD_DISPATCH(span_stats, (const float* x, int64_t n, double eps, Stats* st),
                     (x, n, eps, st))

// y = (x - m) * a + b over [0, n), then y * sigmoid(y) when silu. (Not x * a + (b - m * a):
// with a large mean and a small variance that cancels away the result.)
template <class V>
TANDEM_SIMD_INLINE void scale_shift_body(const float* x, float* y, int64_t n, float m, float a,
                                         float b, bool silu) {
  constexpr int64_t W = sv::lanes<V>;
  const V vm = sv::splat<V>(m), va = sv::splat<V>(a), vb = sv::splat<V>(b);
  int64_t i = 0;
  if (silu) {
    for (; i + W <= n; i += W) {
      const V v = (sv::load<V>(x + i) - vm) * va + vb;
      sv::store(y + i, v * sv::sigmoid(v));
    }
    if (i < n) {
      const V v = (sv::load_partial<V>(x + i, n - i) - vm) * va + vb;
      sv::store_partial(y + i, v * sv::sigmoid(v), n - i);
    }
    return;
  }
  for (; i + W <= n; i += W) sv::store(y + i, (sv::load<V>(x + i) - vm) * va + vb);
  if (i < n) sv::store_partial(y + i, (sv::load_partial<V>(x + i, n - i) - vm) * va + vb, n - i);
}
TANDEM_SIMD_DISPATCH(scale_shift,
                     (const float* x, float* y, int64_t n, float m, float a, float b, bool silu),
                     (x, y, n, m, a, b, silu))

// One LayerNormalization row: y = (x - mean) * inv * gamma + beta; gamma/beta per element, or
// null for 1 and 0.
template <class V>
TANDEM_SIMD_INLINE void layer_norm_row_body(const float* x, float* y, int64_t n, Stats st,
                                            const float* gamma, const float* beta) {
  constexpr int64_t W = sv::lanes<V>;
  const V vm = sv::splat<V>(st.mean), vi = sv::splat<V>(st.inv_std);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    V v = (sv::load<V>(x + i) - vm) * vi;
    if (gamma) v *= sv::load<V>(gamma + i);
    if (beta) v += sv::load<V>(beta + i);
    sv::store(y + i, v);
  }
  if (i < n) {
    const int64_t r = n - i;
    V v = (sv::load_partial<V>(x + i, r) - vm) * vi;
    if (gamma) v *= sv::load_partial<V>(gamma + i, r);
    if (beta) v += sv::load_partial<V>(beta + i, r);
    sv::store_partial(y + i, v, r);
  }
}
TANDEM_SIMD_DISPATCH(layer_norm_row,
                     (const float* x, float* y, int64_t n, Stats st, const float* gamma,
                      const float* beta),
                     (x, y, n, st, gamma, beta))

bool is_f32(const Tensor* t) {
  return t && t->dtype() == DataType::kFloat32;
}

// The fast path of a node, or false to hand the call to the reference kernel.
// A fast path: false when it does not cover the call (the reference kernel then runs it).
using FastFn = bool (*)(const KernelContext& ctx, const NormAttrs& attrs,
                        std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs);

class NormKernel : public FallbackKernel {
 public:
  NormKernel(const Node& node, FastFn fast)
      : FallbackKernel(node), fast_(fast), attrs_(NormAttrs::parse(node)) {}
  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    if (!fast_(ctx, attrs_, inputs, outputs)) fall_back({ctx, inputs, outputs});
  }

 private:
  FastFn fast_;
  NormAttrs attrs_;
};

// InstanceNormalization: per (n, c) over the spatial dims.
bool instance_norm(const KernelContext& ctx, const NormAttrs& attrs,
                   std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Tensor* x = inputs[0];
  const Tensor* scale = inputs.size() > 1 ? inputs[1] : nullptr;
  const Tensor* bias = inputs.size() > 2 ? inputs[2] : nullptr;
  Tensor* y = outputs[0];
  if (!is_f32(x) || !is_f32(scale) || !is_f32(bias) || !is_f32(y) || x->rank() < 3 ||
      y->shape() != x->shape())
    return false;
  const int64_t batch = x->dim(0), channels = x->dim(1);
  if (scale->numel() != channels || bias->numel() != channels) return false;
  const int64_t inner = batch * channels > 0 ? x->numel() / (batch * channels) : 0;
  const double eps = attrs.epsilon;
  const float* xd = x->data<float>();
  const float* sd = scale->data<float>();
  const float* bd = bias->data<float>();
  float* yd = y->data<float>();
  parallel_for_work(ctx, batch * channels, 3.0 * inner, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % channels;
      Stats st;
      span_stats(xd + p * inner, inner, eps, &st);
      const float a = st.inv_std * sd[c];
      scale_shift(xd + p * inner, yd + p * inner, inner, st.mean, a, bd[c], false);
    }
  });
  return true;
}

// A LayerNormalization parameter as a pointer to `inner` values, or null for "none"; `ok` is
// cleared when it is neither (one value is expanded into `one`).
const float* per_element(const Tensor* t, int64_t inner, std::vector<float>& one, bool& ok) {
  if (!t) return nullptr;
  if (!is_f32(t)) {
    ok = false;
    return nullptr;
  }
  if (t->numel() == inner) return t->data<float>();
  if (t->numel() == 1) {
    one.assign(static_cast<size_t>(inner), t->data<float>()[0]);
    return one.data();
  }
  ok = false;
  return nullptr;
}

bool layer_norm(const KernelContext& ctx, const NormAttrs& attrs,
                std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor* x = inputs[0];
  Tensor* y = outputs[0];
  if (!is_f32(x) || !is_f32(y) || y->shape() != x->shape()) return false;
  const int64_t rank = static_cast<int64_t>(x->rank());
  const int64_t axis = normalize_axis(attrs.axis, rank, node);
  int64_t inner = 1;
  for (int64_t d = axis; d < rank; ++d) inner *= x->dim(static_cast<size_t>(d));
  const int64_t outer = inner > 0 ? x->numel() / inner : 0;
  Tensor* mean_out = outputs.size() > 1 ? outputs[1] : nullptr;
  Tensor* inv_out = outputs.size() > 2 ? outputs[2] : nullptr;
  for (Tensor* t : {mean_out, inv_out})
    if (t && (!is_f32(t) || t->numel() != outer)) return false;
  bool ok = true;
  std::vector<float> g1, b1;
  const float* gamma = per_element(inputs.size() > 1 ? inputs[1] : nullptr, inner, g1, ok);
  const float* beta = per_element(inputs.size() > 2 ? inputs[2] : nullptr, inner, b1, ok);
  if (!ok) return false;
  const double eps = attrs.epsilon;
  const float* xd = x->data<float>();
  float* yd = y->data<float>();
  float* md = mean_out ? mean_out->data<float>() : nullptr;
  float* id = inv_out ? inv_out->data<float>() : nullptr;
  parallel_for_work(ctx, outer, 3.0 * inner, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      Stats st;
      span_stats(xd + r * inner, inner, eps, &st);
      layer_norm_row(xd + r * inner, yd + r * inner, inner, st, gamma, beta);
      if (md) md[r] = st.mean;
      if (id) id[r] = st.inv_std;
    }
  });
  return true;
}

// A GroupNorm scale/bias as one value per channel (`channels` of them, or 1 for all), or null
// when it broadcasts any other way than along X's axis 1.
const float* per_channel(const Tensor* t, const Shape& x, int64_t& count) {
  if (!is_f32(t) || t->rank() > x.size()) return nullptr;
  const size_t lead = x.size() - t->rank();  // t's dims align with x's last ones
  for (size_t d = 0; d < t->rank(); ++d)
    if (t->dim(d) != 1 && lead + d != 1) return nullptr;
  count = t->numel();  // 1, or x[1] (the schema's broadcast check ruled out anything else)
  return t->data<float>();
}

bool group_norm(const KernelContext& ctx, const NormAttrs& attrs,
                std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Tensor* x = inputs[0];
  const Tensor* scale = inputs.size() > 1 ? inputs[1] : nullptr;
  const Tensor* bias = inputs.size() > 2 ? inputs[2] : nullptr;
  Tensor* y = outputs[0];
  if (!is_f32(x) || !is_f32(y) || x->rank() < 2 || y->shape() != x->shape()) return false;
  const int64_t batch = x->dim(0), channels = x->dim(1);
  const int64_t groups = attrs.num_groups;
  if (groups < 1 || channels % groups != 0) return false;
  int64_t ns = 1, nb = 1;
  const float one = 1.0f, zero = 0.0f;
  const float* sd = scale ? per_channel(scale, x->shape(), ns) : &one;
  const float* bd = bias ? per_channel(bias, x->shape(), nb) : &zero;
  if (!sd || !bd || (ns != 1 && ns != channels) || (nb != 1 && nb != channels)) return false;
  const int64_t inner = batch * channels > 0 ? x->numel() / (batch * channels) : 0;
  const int64_t per_group = channels / groups;
  const double eps = attrs.epsilon;
  const bool silu = attrs.silu;
  const float* xd = x->data<float>();
  float* yd = y->data<float>();
  parallel_for_work(ctx, batch * groups, 3.0 * per_group * inner, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t g = p % groups;
      const int64_t at = p * per_group * inner;
      Stats st;
      span_stats(xd + at, per_group * inner, eps, &st);
      for (int64_t k = 0; k < per_group; ++k) {
        const int64_t c = g * per_group + k;
        const float a = st.inv_std * sd[ns == 1 ? 0 : c];
        scale_shift(xd + at + k * inner, yd + at + k * inner, inner, st.mean, a,
                    bd[nb == 1 ? 0 : c], silu);
      }
    }
  });
  return true;
}

// Declines (nullptr -> the reference backend) an X the graph shows is not float32.
KernelFactory factory(FastFn fast) {
  return [fast](const Node& node) -> std::unique_ptr<Kernel> {
    if (!node.has_input(0) || known_not_float32(node.inputs[0])) return nullptr;
    return std::make_unique<NormKernel>(node, fast);
  };
}

}  // namespace

void register_normalization_kernels(KernelRegistry& r) {
  r.add("InstanceNormalization", factory(instance_norm));
  r.add("LayerNormalization", factory(layer_norm));
  r.add("GroupNorm", factory(group_norm), kFusedDomain);
}

}  // namespace tandem::cpu

// The CPU backend's pooling, float32:
//
// - MaxPool and AveragePool (1-D to 3-D): oneDNN's pooling_v2_forward on plain NC[D]HW tensors,
//   with strides, dilations, explicit pads, auto_pad and ceil_mode (the extra output row of
//   ceil_mode is extra end padding for oneDNN, which ignores padding for max and for average
//   without count_include_pad). Declined or handed to the reference kernel: MaxPool's Indices
//   output, AveragePool with count_include_pad whose ceil_mode needs padding beyond the pads
//   (ONNX does not count that part), windows that could lie entirely in the padding (pads >= the
//   window), and anything oneDNN cannot build.
// - GlobalAveragePool and GlobalMaxPool: one contiguous plane per (batch, channel), reduced in
//   a loop with 16 independent lanes (so it vectorises); the average sums in float lanes and
//   adds the lanes in double.
// - The channels-last forms of all four (kFusedDomain, channels_last = 1, ops/layout.h): oneDNN
//   pooling on NHWC memory, and global pools that add whole rows of C channels at a time, in
//   vectors as wide as the CPU has (simd.h; a plain loop compiles to scalar or SSE code).
#include "ops/pool.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "backends/cpu/simd.h"
#include "core/error.h"
#include "ops/layout.h"
#include "ops/schema.h"

// Vector helpers are always inlined into bodies compiled for their width (simd.h): the
// calling-convention note GCC gives for wide vectors does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace tandem::cpu {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

constexpr int64_t kMinParallelElements = 1 << 15;

struct PoolPlan {
  memory::desc x_md, y_md;
  dnnl::pooling_v2_forward prim;
  memory scratch;  // the primitive's scratchpad (user mode)
};

Tag plain_tag(size_t rank) {
  return rank == 3 ? Tag::ncw : rank == 4 ? Tag::nchw : Tag::ncdhw;
}

// One plan per (X shape, Y shape).
class PoolKernel : public DnnlKernel<std::vector<int64_t>, PoolPlan> {
 public:
  PoolKernel(const Node& node, bool is_max)
      : DnnlKernel(node, "pooling"),
        is_max_(is_max),
        channels_last_(is_channels_last(node)),
        attrs_(PoolAttrs::parse(node)) {}

 private:
  bool applies(const Call& c) const override {
    const Tensor* x = c.in(0);
    const Tensor* y = c.out(0);
    const bool indices = c.out(1) != nullptr;
    return x && y && !indices && x->dtype() == DataType::kFloat32 && x->rank() >= 3 &&
           x->rank() <= 5 && y->rank() == x->rank() && x->numel() != 0 && y->numel() != 0;
  }

  // The whole pool: oneDNN's pooling primitives keep the count they see when made.
  int threads(const Call& c) const override { return c.ctx.pool.size(); }

  std::vector<int64_t> key(const Call& c, int) const override {
    std::vector<int64_t> key = c.in(0)->shape();
    key.insert(key.end(), c.out(0)->shape().begin(), c.out(0)->shape().end());
    return key;
  }

  std::optional<PoolPlan> make_plan(const Call& c) const override {
    const Shape& xs = c.in(0)->shape();
    const Shape& ys = c.out(0)->shape();
    return channels_last_ ? make_plan(nhwc_to_nchw(xs), nhwc_to_nchw(ys)) : make_plan(xs, ys);
  }

  void run(const Call& c, PoolPlan& p) override {
    dnnl::stream& s = stream();
    memory src(p.x_md, engine(), const_cast<float*>(c.in(0)->data<float>()));
    memory dst(p.y_md, engine(), c.out(0)->data<float>());
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    add_scratchpad(args, p.scratch);
    p.prim.execute(s, args);
    s.wait();
  }

  // The oneDNN geometry for X -> Y (NCHW shapes) as the schema (ops/pool.cc) and the reference
  // kernel define it; std::nullopt where oneDNN would compute something else.
  std::optional<PoolPlan> make_plan(const Shape& xs, const Shape& ys) const {
    const size_t n = xs.size() - 2;
    const bool include_pad = !is_max_ && attrs_.count_include_pad;
    if (!attrs_.fits(n) || ys[0] != xs[0] || ys[1] != xs[1]) return std::nullopt;
    memory::dims d_kernel, d_strides, d_dilation, pad_l, pad_r;
    for (size_t i = 0; i < n; ++i) {
      const int64_t in = xs[i + 2], out = ys[i + 2];
      const PoolAxis axis = attrs_.axis(i, n, in, out);
      const int64_t s = axis.stride, k_eff = axis.extent(), pb = axis.pad_begin, pe = axis.pad_end;
      // oneDNN's output size is (in + pb + pr - k_eff) / s + 1 (floor). ceil_mode's extra
      // window becomes extra end padding.
      int64_t pr = pe;
      if ((in + pb + pr - k_eff) / s + 1 < out) {
        if (include_pad) return std::nullopt;  // ONNX does not count the extension; oneDNN would
        pr = (out - 1) * s + k_eff - in - pb;
      }
      if (in + pb + pr < k_eff || (in + pb + pr - k_eff) / s + 1 != out) return std::nullopt;
      // A window entirely in the padding: ONNX and oneDNN disagree on what it gives.
      if (pb >= k_eff || pr >= k_eff) return std::nullopt;
      d_kernel.push_back(axis.kernel);
      d_strides.push_back(s);
      d_dilation.push_back(axis.dilation - 1);  // oneDNN counts the gaps
      pad_l.push_back(pb);
      pad_r.push_back(pr);
    }
    const Tag tag = channels_last_ ? Tag::nhwc : plain_tag(xs.size());
    PoolPlan p;
    p.x_md = memory::desc(to_dims(xs), Dt::f32, tag);
    p.y_md = memory::desc(to_dims(ys), Dt::f32, tag);
    const auto alg = is_max_       ? dnnl::algorithm::pooling_max
                     : include_pad ? dnnl::algorithm::pooling_avg_include_padding
                                   : dnnl::algorithm::pooling_avg_exclude_padding;
    dnnl::pooling_v2_forward::desc d(dnnl::prop_kind::forward_inference, alg, p.x_md, p.y_md,
                                     d_strides, d_kernel, d_dilation, pad_l, pad_r);
    dnnl::pooling_v2_forward::primitive_desc pd(d, user_scratchpad(), engine());
    p.prim = dnnl::pooling_v2_forward(pd);
    p.scratch = make_scratchpad(pd.scratchpad_desc());
    return p;
  }

  bool is_max_;
  bool channels_last_;  // NHWC X and Y
  PoolAttrs attrs_;
};

// acc[i] += row[i] and out[i] = max(out[i], row[i]) over one NHWC row of C channels (forced
// vectorised: -O2 alone leaves such loops scalar).
// acc[0, c) += (or max=) each of `rows` rows of c floats, in vectors as wide as the CPU has.
// std::max(best, v)'s rule for NaN, as the reference kernel: a NaN never replaces the maximum.
template <class V, bool kMax>
TANDEM_SIMD_INLINE V reduce_step(V a, V v) {
  if constexpr (kMax) return a < v ? v : a;
  return a + v;
}
template <class V, bool kMax>
TANDEM_SIMD_INLINE void reduce_rows(float* acc, const float* x, int64_t rows, int64_t c) {
  using namespace simd;
  constexpr int64_t L = lanes<V>;
  const int64_t full = c / L * L, tail = c - full;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * c;
    for (int64_t i = 0; i < full; i += L)
      store(acc + i, reduce_step<V, kMax>(load<V>(acc + i), load<V>(row + i)));
    if (tail)
      store_partial(acc + full,
                    reduce_step<V, kMax>(load_partial<V>(acc + full, tail),
                                         load_partial<V>(row + full, tail)),
                    tail);
  }
}
template <class V>
TANDEM_SIMD_INLINE void add_rows_body(float* acc, const float* x, int64_t rows, int64_t c) {
  reduce_rows<V, false>(acc, x, rows, c);
}
template <class V>
TANDEM_SIMD_INLINE void max_rows_body(float* acc, const float* x, int64_t rows, int64_t c) {
  reduce_rows<V, true>(acc, x, rows, c);
}
TANDEM_SIMD_DISPATCH(add_rows, (float* acc, const float* x, int64_t rows, int64_t c),
                     (acc, x, rows, c))
TANDEM_SIMD_DISPATCH(max_rows, (float* acc, const float* x, int64_t rows, int64_t c),
                     (acc, x, rows, c))

// Rows a channels-last average adds in float before the partial sums go into double.
constexpr int64_t kFloatSumRows = 256;

// GlobalAveragePool / GlobalMaxPool over contiguous planes.
class GlobalPoolKernel : public FallbackKernel {
 public:
  GlobalPoolKernel(const Node& node, bool is_max)
      : FallbackKernel(node), is_max_(is_max), channels_last_(is_channels_last(node)) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor* x = inputs.empty() ? nullptr : inputs[0];
    Tensor* y = outputs.empty() ? nullptr : outputs[0];
    if (!x || !y || x->dtype() != DataType::kFloat32 || x->rank() < 3 || x->numel() == 0 ||
        (channels_last_ && x->rank() != 4) ||
        y->numel() != x->dim(0) * x->dim(channels_last_ ? 3 : 1)) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    if (channels_last_) {
      rows(ctx, *x, *y);
      return;
    }
    const int64_t planes = x->dim(0) * x->dim(1);
    const int64_t size = x->numel() / planes;
    const float* xd = x->data<float>();
    float* yd = y->data<float>();
    auto body = [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p)
        yd[p] = is_max_ ? plane_max(xd + p * size, size) : plane_mean(xd + p * size, size);
    };
    if (x->numel() >= kMinParallelElements && ctx.pool.size() > 1) {
      ctx.pool.parallel_for(planes, body);
    } else {
      body(0, planes);
    }
  }

 private:
  static constexpr int kLanes = 16;

  static float plane_mean(const float* v, int64_t n) {
    float lane[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int l = 0; l < kLanes; ++l) lane[l] += v[i + l];
    double sum = 0;
    for (; i < n; ++i) sum += v[i];
    for (int l = 0; l < kLanes; ++l) sum += lane[l];
    return static_cast<float>(sum / double(n));
  }

  // std::max(best, v) as the reference kernel: a NaN never replaces the running maximum.
  static float plane_max(const float* v, int64_t n) {
    float lane[kLanes];
    std::fill(lane, lane + kLanes, std::numeric_limits<float>::lowest());
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int l = 0; l < kLanes; ++l) lane[l] = std::max(lane[l], v[i + l]);
    float best = std::numeric_limits<float>::lowest();
    for (; i < n; ++i) best = std::max(best, v[i]);
    for (int l = 0; l < kLanes; ++l) best = std::max(best, lane[l]);
    return best;
  }

  // NHWC: per batch item, the H * W rows of C channels are added (or maxed) into C
  // accumulators, a whole row at a time; an average adds blocks of kFloatSumRows rows in float
  // and the blocks' sums in double. Batch items are split over the threads when large enough.
  void rows(const KernelContext& ctx, const Tensor& x, Tensor& y) const {
    const int64_t batch = x.dim(0), hw = x.dim(1) * x.dim(2), c = x.dim(3);
    const float* xd = x.data<float>();
    float* yd = y.data<float>();
    const bool is_max = is_max_;
    auto items = [&](int64_t begin, int64_t end) {
      std::vector<float> part(is_max ? 0 : c);
      std::vector<double> sum(is_max ? 0 : c);
      for (int64_t n = begin; n < end; ++n) {
        const float* item = xd + n * hw * c;
        float* out = yd + n * c;
        if (is_max) {
          std::fill(out, out + c, std::numeric_limits<float>::lowest());
          max_rows(out, item, hw, c);
          continue;
        }
        std::fill(sum.begin(), sum.end(), 0.0);
        for (int64_t r = 0; r < hw; r += kFloatSumRows) {
          std::fill(part.begin(), part.end(), 0.0f);
          add_rows(part.data(), item + r * c, std::min(kFloatSumRows, hw - r), c);
          for (int64_t i = 0; i < c; ++i) sum[i] += part[i];
        }
        for (int64_t i = 0; i < c; ++i) out[i] = static_cast<float>(sum[i] / double(hw));
      }
    };
    parallel_for_work(ctx, batch, static_cast<double>(hw * c), items);
  }

  bool is_max_;
  bool channels_last_;  // NHWC X and Y
};

bool declined(const Node& node) {
  if (!node.has_input(0) || known_not_float32(node.inputs[0])) return true;
  const Value* x = node.inputs[0];
  return x->shape_known && (x->shape.size() < 3 || x->shape.size() > 5);
}

std::unique_ptr<Kernel> make_max_pool(const Node& node) {
  if (declined(node)) return nullptr;
  if (node.domain == kFusedDomain && !is_channels_last(node)) return nullptr;
  if (node.outputs.size() > 1 && node.outputs[1]) return nullptr;  // Indices
  return std::make_unique<PoolKernel>(node, true);
}

std::unique_ptr<Kernel> make_average_pool(const Node& node) {
  if (declined(node)) return nullptr;
  return std::make_unique<PoolKernel>(node, false);
}

KernelFactory global_pool(bool is_max) {
  return [is_max](const Node& node) -> std::unique_ptr<Kernel> {
    if (declined(node)) return nullptr;
    return std::make_unique<GlobalPoolKernel>(node, is_max);
  };
}

}  // namespace

void register_pool_kernels(KernelRegistry& r) {
  for (const char* domain : {"", kFusedDomain}) {  // ONNX's, and the channels-last forms
    r.add("MaxPool", make_max_pool, domain);
    r.add("AveragePool", make_average_pool, domain);
    r.add("GlobalAveragePool", global_pool(false), domain);
    r.add("GlobalMaxPool", global_pool(true), domain);
  }
}

}  // namespace tandem::cpu

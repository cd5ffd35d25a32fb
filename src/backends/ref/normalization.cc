// Reference kernels of the normalization family. Statistics (means, variances, norms) are
// accumulated in double so these kernels are accurate references; outputs are rounded once.
#include "ops/normalization.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "backends/ref/layout.h"
#include "backends/ref/value_io.h"
#include "core/error.h"
#include "ops/fused_activation.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

// A float32/float64 parameter tensor (scale, bias, mean, ...) read as doubles.
std::vector<double> as_doubles(const Tensor& t, const Node& node) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  dispatch_float(t.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* d = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = d[i];
  });
  return v;
}

// Mean and biased variance of `count` values at p[0], p[stride], ...; two passes for accuracy.
template <typename T>
void mean_var(const T* p, int64_t count, int64_t stride, double& mean, double& var) {
  double sum = 0;
  for (int64_t i = 0; i < count; ++i) sum += p[i * stride];
  mean = count > 0 ? sum / double(count) : 0.0;
  double sq = 0;
  for (int64_t i = 0; i < count; ++i) {
    const double d = p[i * stride] - mean;
    sq += d * d;
  }
  var = count > 0 ? sq / double(count) : 0.0;
}

void batch_norm(const KernelContext& ctx, const NormAttrs& attrs,
                std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const double eps = attrs.epsilon;
  const std::vector<double> scale = as_doubles(*inputs[1], node);
  const std::vector<double> bias = as_doubles(*inputs[2], node);
  std::vector<double> mean = as_doubles(*inputs[3], node);
  std::vector<double> var = as_doubles(*inputs[4], node);
  const int64_t batch = x.dim(0), channels = x.dim(1);
  const int64_t inner = batch * channels > 0 ? x.numel() / (batch * channels) : 0;
  if (attrs.training) {
    // Normalise with the batch's mean and biased variance per channel (over batch and spatial
    // axes), and give the running statistics input * momentum + batch * (1 - momentum).
    TANDEM_CHECK(int64_t(mean.size()) == channels && int64_t(var.size()) == channels,
                 ErrorCode::kInvalidModel, "{}: mean and var must have {} elements",
                 node.describe(), channels);
    std::vector<double> batch_mean(mean.size()), batch_var(var.size());
    dispatch_float(x.dtype(), node, [&](auto tag) {
      using T = decltype(tag);
      const T* xd = x.data<T>();
      for (int64_t c = 0; c < channels; ++c) {
        double sum = 0, sq = 0;
        for (int64_t n = 0; n < batch; ++n)
          for (int64_t i = 0; i < inner; ++i) sum += xd[(n * channels + c) * inner + i];
        const double count = double(batch * inner);
        const double m = count > 0 ? sum / count : 0.0;
        for (int64_t n = 0; n < batch; ++n)
          for (int64_t i = 0; i < inner; ++i) {
            const double d = xd[(n * channels + c) * inner + i] - m;
            sq += d * d;
          }
        batch_mean[c] = m;
        batch_var[c] = count > 0 ? sq / count : 0.0;
      }
    });
    const double momentum = attrs.momentum;
    for (size_t k = 1; k < 3 && k < outputs.size(); ++k) {
      if (!outputs[k]) continue;
      const std::vector<double>& input = k == 1 ? mean : var;
      const std::vector<double>& current = k == 1 ? batch_mean : batch_var;
      std::vector<double> running(input.size());
      for (size_t c = 0; c < input.size(); ++c)
        running[c] = input[c] * momentum + current[c] * (1 - momentum);
      write_doubles(*outputs[k], running, node);
    }
    mean = std::move(batch_mean);
    var = std::move(batch_var);
  }
  // Per-channel parameters, or (opset < 9, spatial=0) one per element of a sample.
  const bool per_element = static_cast<int64_t>(scale.size()) != channels;
  const size_t want = per_element ? size_t(channels * inner) : size_t(channels);
  TANDEM_CHECK(
      scale.size() == want && bias.size() == want && mean.size() == want && var.size() == want,
      ErrorCode::kInvalidModel, "{}: scale/B/mean/var must have {} elements", node.describe(),
      want);
  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    ctx.pool.parallel_for(batch * channels, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = p % channels;
        for (int64_t i = 0; i < inner; ++i) {
          const size_t k = per_element ? size_t(c * inner + i) : size_t(c);
          const double inv = 1.0 / std::sqrt(var[k] + eps);
          yd[p * inner + i] =
              static_cast<T>((xd[p * inner + i] - mean[k]) * inv * scale[k] + bias[k]);
        }
      }
    });
  });
}

void instance_norm(const KernelContext& ctx, const NormAttrs& attrs,
                   std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const double eps = attrs.epsilon;
  const std::vector<double> scale = as_doubles(*inputs[1], node);
  const std::vector<double> bias = as_doubles(*inputs[2], node);
  const int64_t batch = x.dim(0), channels = x.dim(1);
  TANDEM_CHECK(int64_t(scale.size()) == channels && int64_t(bias.size()) == channels,
               ErrorCode::kInvalidModel, "{}: scale and B must have {} elements", node.describe(),
               channels);
  const int64_t inner = batch * channels > 0 ? x.numel() / (batch * channels) : 0;
  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    ctx.pool.parallel_for(batch * channels, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = p % channels;
        double mean, var;
        mean_var(xd + p * inner, inner, 1, mean, var);
        const double inv = 1.0 / std::sqrt(var + eps);
        for (int64_t i = 0; i < inner; ++i)
          yd[p * inner + i] = static_cast<T>((xd[p * inner + i] - mean) * inv * scale[c] + bias[c]);
      }
    });
  });
}

void layer_norm(const KernelContext& ctx, const NormAttrs& attrs,
                std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  Tensor* mean_out = outputs.size() > 1 ? outputs[1] : nullptr;
  Tensor* inv_out = outputs.size() > 2 ? outputs[2] : nullptr;
  const int64_t rank = static_cast<int64_t>(x.rank());
  const int64_t axis = normalize_axis(attrs.axis, rank, node);
  const double eps = attrs.epsilon;
  const Shape normalized(x.shape().begin() + axis, x.shape().end());
  const int64_t inner = shape_numel(normalized);
  const int64_t outer = inner > 0 ? x.numel() / inner : 0;
  // Scale and B are broadcast to the normalized shape once, up front.
  auto expand = [&](const Tensor* t, double dflt) {
    std::vector<double> full(static_cast<size_t>(inner), dflt);
    if (!t) return full;
    const std::vector<double> v = as_doubles(*t, node);
    TANDEM_CHECK(broadcast_shapes(t->shape(), normalized, node) == normalized,
                 ErrorCode::kInvalidModel, "{}: shape {} does not broadcast to {}", node.describe(),
                 shape_str(t->shape()), shape_str(normalized));
    const std::vector<int64_t> strides = broadcast_strides(t->shape(), normalized);
    for (int64_t i = 0; i < inner; ++i) {
      int64_t rem = i, at = 0;
      for (size_t d = normalized.size(); d-- > 0;) {
        at += (rem % normalized[d]) * strides[d];
        rem /= normalized[d];
      }
      full[i] = v[at];
    }
    return full;
  };
  const std::vector<double> scale = expand(inputs.size() > 1 ? inputs[1] : nullptr, 1.0);
  const std::vector<double> bias = expand(inputs.size() > 2 ? inputs[2] : nullptr, 0.0);
  std::vector<double> means(static_cast<size_t>(outer)), inv_stds(static_cast<size_t>(outer));
  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    ctx.pool.parallel_for(outer, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        double mean, var;
        mean_var(xd + r * inner, inner, 1, mean, var);
        const double inv = 1.0 / std::sqrt(var + eps);
        for (int64_t i = 0; i < inner; ++i)
          yd[r * inner + i] = static_cast<T>((xd[r * inner + i] - mean) * inv * scale[i] + bias[i]);
        means[r] = mean;
        inv_stds[r] = inv;
      }
    });
  });
  // The statistics outputs have the stash type (float32 or float64).
  for (auto [out, v] : {std::pair{mean_out, &means}, std::pair{inv_out, &inv_stds}}) {
    if (!out) continue;
    TANDEM_CHECK(out->numel() == outer, ErrorCode::kInternal, "{}: statistics output size {}",
                 node.describe(), out->numel());
    for (int64_t r = 0; r < outer; ++r) {
      if (out->dtype() == DataType::kFloat64) {
        out->data<double>()[r] = (*v)[r];
      } else {
        out->data<float>()[r] = static_cast<float>((*v)[r]);
      }
    }
  }
}

void group_norm(const KernelContext& ctx, const NormAttrs& attrs,
                std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const double eps = attrs.epsilon;
  const int64_t groups = attrs.num_groups;
  const std::vector<double> scale = as_doubles(*inputs[1], node);
  const std::vector<double> bias = as_doubles(*inputs[2], node);
  const int64_t batch = x.dim(0), channels = x.dim(1);
  TANDEM_CHECK(groups >= 1 && channels % groups == 0, ErrorCode::kInvalidModel,
               "{}: num_groups {} must divide the {} channels", node.describe(), groups, channels);
  const bool per_channel = int64_t(scale.size()) == channels;
  TANDEM_CHECK((per_channel || int64_t(scale.size()) == groups) && bias.size() == scale.size(),
               ErrorCode::kInvalidModel, "{}: scale and bias must have {} or {} elements",
               node.describe(), groups, channels);
  const int64_t ch_per_group = channels / groups;
  const int64_t spatial = batch * channels > 0 ? x.numel() / (batch * channels) : 0;
  const int64_t group_size = ch_per_group * spatial;  // contiguous in memory
  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    ctx.pool.parallel_for(batch * groups, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t g = p % groups;
        const T* in = xd + p * group_size;
        T* out = yd + p * group_size;
        double mean, var;
        mean_var(in, group_size, 1, mean, var);
        const double inv = 1.0 / std::sqrt(var + eps);
        for (int64_t cg = 0; cg < ch_per_group; ++cg) {
          const size_t k = per_channel ? size_t(g * ch_per_group + cg) : size_t(g);
          for (int64_t i = 0; i < spatial; ++i) {
            const int64_t at = cg * spatial + i;
            out[at] = static_cast<T>((in[at] - mean) * inv * scale[k] + bias[k]);
          }
        }
      }
    });
  });
}

// The fused GroupNorm (com.tandem, see ops/normalization.cc): each sample cut into num_groups
// contiguous chunks normalized on their own, then * scale + bias broadcast numpy-style, then
// optionally SiLU. Computed in double, rounded once.
void group_norm_fused(const KernelContext& ctx, const NormAttrs& attrs,
                      std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const Tensor* scale = inputs.size() > 1 ? inputs[1] : nullptr;
  const Tensor* bias = inputs.size() > 2 ? inputs[2] : nullptr;
  Tensor& y = *outputs[0];
  const double eps = attrs.epsilon;
  const int64_t groups = attrs.num_groups;
  const bool silu = attrs.silu;
  const int64_t batch = x.rank() > 0 ? x.dim(0) : 1;
  const int64_t chunk = batch * groups > 0 ? x.numel() / (batch * groups) : 0;
  TANDEM_CHECK(groups >= 1 && chunk * batch * groups == x.numel(), ErrorCode::kInvalidArgument,
               "{}: X of shape {} cannot be cut into {} groups per sample", node.describe(),
               shape_str(x.shape()), groups);
  // The normalized X, before the affine part.
  std::vector<double> t(static_cast<size_t>(x.numel()));
  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    ctx.pool.parallel_for(batch * groups, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        double mean, var;
        mean_var(xd + p * chunk, chunk, 1, mean, var);
        const double inv = 1.0 / std::sqrt(var + eps);
        for (int64_t i = p * chunk; i < (p + 1) * chunk; ++i) t[i] = (xd[i] - mean) * inv;
      }
    });
  });
  const std::vector<double> sv = scale ? as_doubles(*scale, node) : std::vector<double>{1.0};
  const std::vector<double> bv = bias ? as_doubles(*bias, node) : std::vector<double>{0.0};
  const Shape& ys = y.shape();
  const std::vector<int64_t> xst = broadcast_strides(x.shape(), ys);
  const std::vector<int64_t> sst = broadcast_strides(scale ? scale->shape() : Shape{}, ys);
  const std::vector<int64_t> bst = broadcast_strides(bias ? bias->shape() : Shape{}, ys);
  dispatch_float(y.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    T* yd = y.data<T>();
    std::vector<int64_t> idx(ys.size(), 0);
    for (int64_t i = 0; i < y.numel(); ++i) {
      int64_t xo = 0, so = 0, bo = 0;
      for (size_t d = 0; d < ys.size(); ++d) {
        xo += idx[d] * xst[d];
        so += idx[d] * sst[d];
        bo += idx[d] * bst[d];
      }
      double v = t[xo] * sv[so] + bv[bo];
      if (silu) v = v / (1.0 + std::exp(-v));
      yd[i] = static_cast<T>(v);
      for (size_t d = ys.size(); d-- > 0;) {
        if (++idx[d] < ys[d]) break;
        idx[d] = 0;
      }
    }
  });
}

// Views a tensor as [outer, axis_len, inner] around `axis`.
struct AxisSplit {
  int64_t outer = 1, len = 1, inner = 1;
};
AxisSplit split_at(const Shape& shape, int64_t axis) {
  AxisSplit s;
  for (int64_t i = 0; i < static_cast<int64_t>(shape.size()); ++i) {
    if (i < axis) s.outer *= shape[i];
    if (i == axis) s.len = shape[i];
    if (i > axis) s.inner *= shape[i];
  }
  return s;
}

void lp_norm(const KernelContext& ctx, const NormAttrs& attrs,
             std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const int64_t axis = normalize_axis(attrs.axis, int64_t(x.rank()), node);
  const int64_t p = attrs.p;  // 1 or 2 (parse checked)
  const AxisSplit s = split_at(x.shape(), axis);
  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    for (int64_t o = 0; o < s.outer; ++o) {
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t base = o * s.len * s.inner + i;
        double norm = 0;
        for (int64_t k = 0; k < s.len; ++k) {
          const double v = xd[base + k * s.inner];
          norm += p == 1 ? std::abs(v) : v * v;
        }
        if (p == 2) norm = std::sqrt(norm);
        // A zero vector stays zero rather than becoming NaN.
        for (int64_t k = 0; k < s.len; ++k)
          yd[base + k * s.inner] = norm == 0 ? T(0) : static_cast<T>(xd[base + k * s.inner] / norm);
      }
    }
  });
}

void lrn(const KernelContext& ctx, const NormAttrs& attrs, std::span<const Tensor* const> inputs,
         std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const int64_t size = attrs.size;  // >= 1 (parse checked)
  const double alpha = attrs.alpha, beta = attrs.beta, bias = attrs.bias;
  const int64_t batch = x.dim(0), channels = x.dim(1);
  const int64_t inner = batch * channels > 0 ? x.numel() / (batch * channels) : 0;
  // The window over channels: [c - floor((size-1)/2), c + ceil((size-1)/2)].
  const int64_t before = (size - 1) / 2, after = size - 1 - before;
  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    ctx.pool.parallel_for(batch * channels, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t n = p / channels, c = p % channels;
        const int64_t lo = std::max<int64_t>(0, c - before);
        const int64_t hi = std::min<int64_t>(channels - 1, c + after);
        for (int64_t i = 0; i < inner; ++i) {
          double sq = 0;
          for (int64_t cc = lo; cc <= hi; ++cc) {
            const double v = xd[(n * channels + cc) * inner + i];
            sq += v * v;
          }
          yd[p * inner + i] =
              static_cast<T>(xd[p * inner + i] / std::pow(bias + alpha / double(size) * sq, beta));
        }
      }
    });
  });
}

void mean_variance_norm(const KernelContext& ctx, const NormAttrs& attrs,
                        std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const int64_t rank = static_cast<int64_t>(x.rank());
  // Statistics have the input's shape with the reduced axes set to 1.
  Shape stat_shape = x.shape();
  for (int64_t a : attrs.axes) stat_shape[normalize_axis(a, rank, node)] = 1;
  const int64_t stats = shape_numel(stat_shape);
  const int64_t count = stats > 0 ? x.numel() / stats : 0;
  const std::vector<int64_t> strides = broadcast_strides(stat_shape, x.shape());
  // Index of element i's statistic.
  auto stat_index = [&](int64_t i) {
    int64_t at = 0;
    for (int64_t d = rank; d-- > 0;) {
      at += (i % x.dim(d)) * strides[d];
      i /= x.dim(d);
    }
    return at;
  };
  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    T* yd = y.data<T>();
    std::vector<double> mean(stats, 0.0), var(stats, 0.0);
    for (int64_t i = 0; i < x.numel(); ++i) mean[stat_index(i)] += xd[i];
    for (double& m : mean) m /= double(count);
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double d = xd[i] - mean[stat_index(i)];
      var[stat_index(i)] += d * d;
    }
    for (double& v : var) v /= double(count);
    // ONNX's function body: (X - mean) / (sqrt(var) + 1e-9).
    for (int64_t i = 0; i < x.numel(); ++i) {
      const int64_t k = stat_index(i);
      yd[i] = static_cast<T>((xd[i] - mean[k]) / (std::sqrt(var[k]) + 1e-9));
    }
  });
}

// The parts X0, X1, ... of a channels-last BatchNormalization's X (inputs 0, 5, 6, ...) joined
// along the last axis, as a Concat would: per pixel, each part's channels in turn.
Tensor join_channels(const KernelContext& ctx, std::span<const Tensor* const> inputs) {
  const Node& node = ctx.node;
  const Tensor& x0 = *inputs[0];
  TANDEM_CHECK(x0.rank() == 4, ErrorCode::kInvalidModel, "{}: X must have rank 4, got {}",
               node.describe(), shape_str(x0.shape()));
  std::vector<const Tensor*> parts{&x0};
  for (size_t i = 5; i < inputs.size(); ++i) parts.push_back(inputs[i]);
  Shape whole = x0.shape();
  whole[3] = 0;
  for (const Tensor* t : parts) {
    TANDEM_CHECK(t && t->dtype() == x0.dtype() && t->rank() == 4 &&
                     std::equal(t->shape().begin(), t->shape().begin() + 3, x0.shape().begin()),
                 ErrorCode::kInvalidModel, "{}: the parts of X differ in more than the channels",
                 node.describe());
    whole[3] += t->dim(3);
  }
  Tensor out(x0.dtype(), whole);
  const int64_t pixels = whole[0] * whole[1] * whole[2];
  const size_t es = dtype_size(x0.dtype());
  auto* dst = static_cast<uint8_t*>(out.raw());
  for (int64_t p = 0; p < pixels; ++p)
    for (const Tensor* t : parts) {
      const size_t run = static_cast<size_t>(t->dim(3)) * es;
      std::memcpy(dst, static_cast<const uint8_t*>(t->raw()) + static_cast<size_t>(p) * run, run);
      dst += run;
    }
  return out;
}

// The channels-last BatchNormalization (kFusedDomain, ops/layout.h): the NCHW kernel on an NCHW
// copy of X (its parts joined first), the result copied back to NHWC, then its fused activation
// (if any) element by element.
void batch_norm_channels_last(const KernelContext& ctx, const NormAttrs& attrs,
                              std::span<const Tensor* const> all_inputs,
                              std::span<Tensor* const> outputs) {
  const FusedActivation act = read_fused_activation(ctx.node);
  Tensor joined;
  std::vector<const Tensor*> inputs(all_inputs.begin(),
                                    all_inputs.begin() + std::min<size_t>(all_inputs.size(), 5));
  if (all_inputs.size() > 5) {
    joined = join_channels(ctx, all_inputs);
    inputs[0] = &joined;
  }
  run_on_channels_first(ctx, inputs, outputs,
                        [&](std::span<const Tensor* const> in, std::span<Tensor* const> out) {
                          batch_norm(ctx, attrs, in, out);
                        });
  if (act.kind == ActivationKind::kNone) return;
  Tensor& y = *outputs[0];
  dispatch_float(y.dtype(), ctx.node, [&](auto tag) {
    using T = decltype(tag);
    T* yd = y.data<T>();
    for (int64_t i = 0; i < y.numel(); ++i) yd[i] = apply_activation(act, yd[i]);
  });
}

}  // namespace

void register_normalization_ref_kernels(KernelRegistry& r) {
  r.add("BatchNormalization", batch_norm);
  r.add("BatchNormalization", batch_norm_channels_last, kFusedDomain);
  r.add("InstanceNormalization", instance_norm);
  r.add("LayerNormalization", layer_norm);
  r.add("GroupNormalization", group_norm);
  r.add("GroupNorm", group_norm_fused, kFusedDomain);
  r.add("LpNormalization", lp_norm);
  r.add("LRN", lrn);
  r.add("MeanVarianceNormalization", mean_variance_norm);
}

}  // namespace tandem

// The CPU backend's BatchNormalization: y = x * a[c] + b[c] with a = scale / sqrt(var + eps) and
// b = B - mean * a, computed in double from the parameters and rounded once (kept from the first
// call when all four are constants of the model). The loop runs over contiguous (batch, channel)
// planes, so it vectorises. A BN after a Conv is usually folded into the Conv by the fusion
// passes; this kernel handles the others. The channels-last form (kFusedDomain, ops/layout.h; in
// inference only) runs over pixels, each a contiguous run of the channels, in vectors as wide as
// the CPU has (simd.h: a plain loop here compiles to scalar SSE), with its fused activation
// applied in the same pass (Relu, LeakyRelu, Clip in the vector loop; the others after it).
//
// Training mode (opset >= 14) takes mean and var from the batch instead: per channel, summed in
// double over the channel's planes (channels spread over the threads), and writes the running
// statistics input * momentum + batch * (1 - momentum) to outputs 1 and 2.
//
// Declined (reference backend): the opset < 9 per-element form (spatial = 0), statistics outputs
// outside training mode, and dtypes other than float32. Float64 or odd parameter shapes seen at
// run time go to the reference kernel.
#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "backends/cpu/simd.h"
#include "core/error.h"
#include "ops/fused_activation.h"
#include "ops/layout.h"
#include "ops/normalization.h"

// Vector helpers are always inlined into bodies compiled for their width (simd.h): the
// calling-convention note GCC gives for wide vectors does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace tandem::cpu {

namespace {

// Split over threads only when there is enough work to pay for waking them.
constexpr int64_t kMinParallelElements = 1 << 15;

// affine_rows: y = act(x * a + b), a and b one value per channel; K is the activation applied in
// the vector loop (kNone, kRelu, kLeakyRelu or kClip).
template <class V, ActivationKind K>
TANDEM_SIMD_INLINE V vector_act(V v, V lo, V hi) {
  const V zero = simd::splat<V>(0.0f);
  if constexpr (K == ActivationKind::kRelu) return simd::max(v, zero);
  if constexpr (K == ActivationKind::kLeakyRelu) return v < zero ? v * lo : v;
  if constexpr (K == ActivationKind::kClip) return simd::min(simd::max(v, lo), hi);
  return v;
}

template <class V, ActivationKind K>
TANDEM_SIMD_INLINE void affine_rows(const float* x, float* y, const float* a, const float* b,
                                    int64_t pixels, int64_t channels, int64_t y_stride, float p0,
                                    float p1) {
  using namespace simd;
  const V lo = splat<V>(p0), hi = splat<V>(p1);
  constexpr int64_t L = lanes<V>;
  const int64_t full = channels / L * L, tail = channels - full;
  for (int64_t p = 0; p < pixels; ++p) {
    const float* in = x + p * channels;
    float* out = y + p * y_stride;
    for (int64_t c = 0; c < full; c += L)
      store(out + c, vector_act<V, K>(load<V>(in + c) * load<V>(a + c) + load<V>(b + c), lo, hi));
    if (tail)
      store_partial(
          out + full,
          vector_act<V, K>(load_partial<V>(in + full, tail) * load_partial<V>(a + full, tail) +
                               load_partial<V>(b + full, tail),
                           lo, hi),
          tail);
  }
}

// y = act(x * a + b) over `pixels` rows of `channels` values, x's rows contiguous, y's
// `y_stride` apart. `act` picks the vector loop; one it has none for runs as kNone (the caller
// finishes it).
template <class V>
TANDEM_SIMD_INLINE void scale_shift_rows_body(const float* x, float* y, const float* a,
                                              const float* b, int64_t pixels, int64_t channels,
                                              int64_t y_stride, const FusedActivation* act) {
  switch (act->kind) {
    case ActivationKind::kRelu:
      return affine_rows<V, ActivationKind::kRelu>(x, y, a, b, pixels, channels, y_stride, 0, 0);
    case ActivationKind::kLeakyRelu:
      return affine_rows<V, ActivationKind::kLeakyRelu>(x, y, a, b, pixels, channels, y_stride,
                                                        act->alpha, 0);
    case ActivationKind::kClip:
      return affine_rows<V, ActivationKind::kClip>(x, y, a, b, pixels, channels, y_stride,
                                                   act->alpha, act->beta);
    default:
      return affine_rows<V, ActivationKind::kNone>(x, y, a, b, pixels, channels, y_stride, 0, 0);
  }
}
TANDEM_SIMD_DISPATCH(scale_shift_rows,
                     (const float* x, float* y, const float* a, const float* b, int64_t pixels,
                      int64_t channels, int64_t y_stride, const FusedActivation* act),
                     (x, y, a, b, pixels, channels, y_stride, act))

// Whether affine_rows applies `kind` itself.
bool vector_activation(ActivationKind kind) {
  return kind == ActivationKind::kNone || kind == ActivationKind::kRelu ||
         kind == ActivationKind::kLeakyRelu || kind == ActivationKind::kClip;
}

class BatchNormKernel : public FallbackKernel {
 public:
  BatchNormKernel(const Node& node, const NormAttrs& attrs)
      : FallbackKernel(node),
        channels_last_(is_channels_last(node)),
        eps_(attrs.epsilon),
        training_(attrs.training),
        momentum_(attrs.momentum),
        act_(channels_last_ ? read_fused_activation(node) : FusedActivation{}) {
    constant_params_ = !training_;
    for (size_t i = 1; i < 5; ++i)
      if (!node.has_input(i) || !node.inputs[i]->is_constant()) constant_params_ = false;
  }

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor* x = inputs.size() > 0 ? inputs[0] : nullptr;
    Tensor* y = outputs.empty() ? nullptr : outputs[0];
    if (!applies(inputs, y)) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    const int64_t batch = x->dim(0), channels = y->dim(channel_axis(*y));
    const int64_t inner = batch * channels > 0 ? x->numel() / (batch * channels) : 0;
    const float* a;
    const float* b;
    std::vector<float> scratch;
    if (training_) {
      if (!batch_statistics(ctx, *x, outputs)) {
        fall_back({ctx, inputs, outputs});
        return;
      }
      fold(inputs, channels, scratch);
      write_running(inputs, outputs, channels);
      a = scratch.data();
    } else if (constant_params_) {
      std::call_once(once_, [&] { fold(inputs, channels, folded_); });
      a = folded_.data();
    } else {
      fold(inputs, channels, scratch);
      a = scratch.data();
    }
    b = a + channels;
    float* yd = y->data<float>();
    if (channels_last_) {
      const int64_t pixels = channels > 0 ? y->numel() / channels : 0;
      // X's parts (inputs 0, 5, 6, ...): each fills its own run of every pixel's channels.
      std::vector<const Tensor*> parts{x};
      for (size_t i = 5; i < inputs.size(); ++i) parts.push_back(inputs[i]);
      auto pixel_body = [&](int64_t begin, int64_t end) {
        // One part at a time over all the pixels: its rows into their place in Y's rows.
        int64_t at = 0;
        for (const Tensor* part : parts) {
          const int64_t c = part->dim(3);
          scale_shift_rows(part->data<float>() + begin * c, yd + begin * channels + at, a + at,
                           b + at, end - begin, c, channels, &act_);
          at += c;
        }
        if (vector_activation(act_.kind)) return;
        for (int64_t i = begin * channels; i < end * channels; ++i)
          yd[i] = apply_activation(act_, yd[i]);
      };
      if (y->numel() >= kMinParallelElements && ctx.pool.size() > 1) {
        ctx.pool.parallel_for(pixels, pixel_body);
      } else {
        pixel_body(0, pixels);
      }
      return;
    }
    const float* xd = x->data<float>();
    auto body = [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = p % channels;
        const float ac = a[c], bc = b[c];
        const float* in = xd + p * inner;
        float* out = yd + p * inner;
        for (int64_t i = 0; i < inner; ++i) out[i] = in[i] * ac + bc;
      }
    };
    if (x->numel() >= kMinParallelElements && ctx.pool.size() > 1) {
      ctx.pool.parallel_for(batch * channels, body);
    } else {
      body(0, batch * channels);
    }
  }

 private:
  size_t channel_axis(const Tensor& x) const { return channels_last_ ? x.rank() - 1 : 1; }

  // Float32 throughout, parameters of one value per channel, Y of X's shape; a channels-last BN
  // may have X in parts (inputs 5, ...: ops/layout.h), which must add up to Y along the channels.
  bool applies(std::span<const Tensor* const> inputs, const Tensor* y) const {
    if (inputs.size() < 5 || (inputs.size() > 5 && !channels_last_) || !y) return false;
    for (const Tensor* t : inputs)
      if (!t || t->dtype() != DataType::kFloat32) return false;
    const Tensor& x = *inputs[0];
    if (x.rank() < 2 || (channels_last_ && x.rank() != 4) || y->rank() != x.rank()) return false;
    int64_t channels = x.dim(channel_axis(x));
    for (size_t i = 5; i < inputs.size(); ++i) {
      const Tensor& part = *inputs[i];
      if (part.rank() != 4 ||
          !std::equal(part.shape().begin(), part.shape().begin() + 3, x.shape().begin()))
        return false;
      channels += part.dim(3);
    }
    Shape whole = x.shape();
    whole[channel_axis(x)] = channels;
    if (y->shape() != whole) return false;
    for (size_t i = 1; i < 5; ++i)
      if (inputs[i]->numel() != channels) return false;
    return true;
  }

  // Training mode: the batch's mean and biased variance per channel, into stats = [mean, var]
  // (2 * channels doubles, read by fold), and the running statistics into outputs 1 and 2. False
  // (nothing written) when an output is not float32 of `channels` values.
  bool batch_statistics(const KernelContext& ctx, const Tensor& x,
                        std::span<Tensor* const> outputs) {
    const int64_t batch = x.dim(0), channels = x.dim(1);
    const int64_t inner = batch * channels > 0 ? x.numel() / (batch * channels) : 0;
    for (size_t k = 1; k < 3 && k < outputs.size(); ++k)
      if (outputs[k] &&
          (outputs[k]->dtype() != DataType::kFloat32 || outputs[k]->numel() != channels))
        return false;
    stats_.assign(2 * channels, 0.0);
    const float* xd = x.data<float>();
    auto body = [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        double sum = 0;
        for (int64_t n = 0; n < batch; ++n) {
          const float* plane = xd + (n * channels + c) * inner;
          for (int64_t i = 0; i < inner; ++i) sum += plane[i];
        }
        const double count = double(batch * inner);
        const double mean = count > 0 ? sum / count : 0.0;
        double sq = 0;
        for (int64_t n = 0; n < batch; ++n) {
          const float* plane = xd + (n * channels + c) * inner;
          for (int64_t i = 0; i < inner; ++i) sq += (plane[i] - mean) * (plane[i] - mean);
        }
        stats_[c] = mean;
        stats_[channels + c] = count > 0 ? sq / count : 0.0;
      }
    };
    if (x.numel() >= kMinParallelElements && ctx.pool.size() > 1) {
      ctx.pool.parallel_for(channels, body);
    } else {
      body(0, channels);
    }
    return true;
  }

  // out = [a (channels values), b (channels values)]; in training mode mean and var are the
  // batch's (stats_).
  void fold(std::span<const Tensor* const> inputs, int64_t channels, std::vector<float>& out) {
    const float* scale = inputs[1]->data<float>();
    const float* bias = inputs[2]->data<float>();
    const float* mean = inputs[3]->data<float>();
    const float* var = inputs[4]->data<float>();
    out.resize(2 * channels);
    for (int64_t c = 0; c < channels; ++c) {
      const double m = training_ ? stats_[c] : double(mean[c]);
      const double v = training_ ? stats_[channels + c] : double(var[c]);
      const double a = double(scale[c]) / std::sqrt(v + double(eps_));
      out[c] = static_cast<float>(a);
      out[channels + c] = static_cast<float>(double(bias[c]) - m * a);
    }
  }

  // Training mode: outputs 1 and 2 (when wired) get the running mean and variance.
  void write_running(std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs,
                     int64_t channels) const {
    const double momentum = momentum_;
    for (size_t k = 1; k < 3 && k < outputs.size(); ++k) {
      if (!outputs[k]) continue;
      const float* input = inputs[k + 2]->data<float>();  // input_mean, input_var
      const double* current = stats_.data() + (k - 1) * channels;
      float* out = outputs[k]->data<float>();
      for (int64_t c = 0; c < channels; ++c)
        out[c] = static_cast<float>(double(input[c]) * momentum + current[c] * (1 - momentum));
    }
  }

  bool channels_last_;
  float eps_;
  bool training_;
  float momentum_;
  FusedActivation act_;        // channels-last form only (the NCHW op has none)
  std::vector<double> stats_;  // training mode: the last batch's [mean, var]
  bool constant_params_ = false;
  std::once_flag once_;
  std::vector<float> folded_;
};

std::unique_ptr<Kernel> make_batch_norm(const Node& node) {
  // More than five inputs: a channels-last BN with X in parts (ops/layout.h).
  const bool parts = node.domain == kFusedDomain && is_channels_last(node);
  if (node.inputs.size() < 5 || (node.inputs.size() > 5 && !parts) || !node.has_input(0))
    return nullptr;
  for (const Value* v : node.inputs)
    if (!v || known_not_float32(v)) return nullptr;
  const NormAttrs attrs = NormAttrs::parse(node);
  if (!attrs.training)
    for (size_t i = 1; i < node.outputs.size(); ++i)
      if (node.outputs[i]) return nullptr;  // statistics outputs outside training mode
  if (attrs.per_element_stats || !attrs.is_test || (attrs.training && node.opset < 14))
    return nullptr;
  // Channels-last is an inference form; the reference kernel refuses or runs anything else.
  if (node.domain == kFusedDomain && (!is_channels_last(node) || attrs.training)) return nullptr;
  return std::make_unique<BatchNormKernel>(node, attrs);
}

}  // namespace

void register_batchnorm_kernels(KernelRegistry& r) {
  r.add("BatchNormalization", make_batch_norm);
  r.add("BatchNormalization", make_batch_norm, kFusedDomain);
}

}  // namespace tandem::cpu

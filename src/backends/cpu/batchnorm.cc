// The CPU backend's BatchNormalization: y = x * a[c] + b[c] with a = scale / sqrt(var + eps) and
// b = B - mean * a, computed in double from the parameters and rounded once (kept from the first
// call when all four are constants of the model). The loop runs over contiguous (batch, channel)
// planes, so it vectorises. A BN after a Conv is usually folded into the Conv by the fusion
// passes; this kernel handles the others. The channels-last form (kFusedDomain, ops/layout.h; in
// inference only) runs over pixels, each a contiguous run of the channels.
//
// Training mode (opset >= 14) takes mean and var from the batch instead: per channel, summed in
// double over the channel's planes (channels spread over the threads), and writes the running
// statistics input * momentum + batch * (1 - momentum) to outputs 1 and 2.
//
// Declined (reference backend): the opset < 9 per-element form (spatial = 0), statistics outputs
// outside training mode, and dtypes other than float32. Float64 or odd parameter shapes seen at
// run time go to the reference kernel.
#include <cmath>
#include <mutex>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "core/error.h"
#include "ops/layout.h"
#include "ops/normalization.h"

namespace tandem::cpu {

namespace {

// Split over threads only when there is enough work to pay for waking them.
constexpr int64_t kMinParallelElements = 1 << 15;

class BatchNormKernel : public FallbackKernel {
 public:
  BatchNormKernel(const Node& node, const NormAttrs& attrs)
      : FallbackKernel(node),
        channels_last_(is_channels_last(node)),
        eps_(attrs.epsilon),
        training_(attrs.training),
        momentum_(attrs.momentum) {
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
    const int64_t batch = x->dim(0), channels = x->dim(channel_axis(*x));
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
    const float* xd = x->data<float>();
    float* yd = y->data<float>();
    if (channels_last_) {
      const int64_t pixels = channels > 0 ? x->numel() / channels : 0;
      auto pixel_body = [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          const float* in = xd + p * channels;
          float* out = yd + p * channels;
          for (int64_t c = 0; c < channels; ++c) out[c] = in[c] * a[c] + b[c];
        }
      };
      if (x->numel() >= kMinParallelElements && ctx.pool.size() > 1) {
        ctx.pool.parallel_for(pixels, pixel_body);
      } else {
        pixel_body(0, pixels);
      }
      return;
    }
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

  bool applies(std::span<const Tensor* const> inputs, const Tensor* y) const {
    if (inputs.size() != 5 || !y) return false;
    for (const Tensor* t : inputs)
      if (!t || t->dtype() != DataType::kFloat32) return false;
    const Tensor& x = *inputs[0];
    if (x.rank() < 2 || (channels_last_ && x.rank() != 4) || y->shape() != x.shape()) return false;
    for (size_t i = 1; i < 5; ++i)
      if (inputs[i]->numel() != x.dim(channel_axis(x))) return false;
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
  std::vector<double> stats_;  // training mode: the last batch's [mean, var]
  bool constant_params_ = false;
  std::once_flag once_;
  std::vector<float> folded_;
};

std::unique_ptr<Kernel> make_batch_norm(const Node& node) {
  if (node.inputs.size() != 5 || !node.has_input(0)) return nullptr;
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

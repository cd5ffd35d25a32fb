// Reference kernels of the loss family: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
// Computed in double. The input is viewed as [N, C, D] (D = product of d1..dk), the target as
// [N, D]. loss[n, d] = -input[n, t, d] * weight[t] with t = target[n, d]; an element whose target
// equals ignore_index contributes 0 and weighs 0. "mean" divides the weighted sum by the sum of
// the weights of the elements that count.
#include "ops/loss.h"

#include <cmath>
#include <limits>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/value_io.h"
#include "core/error.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

void nll(const Node& node, const LossAttrs& attrs, const std::vector<double>& logp,
         const Shape& shape, const Tensor& target, const Tensor* weight, Tensor& out) {
  const int64_t n = shape[0], c = shape[1];
  const int64_t d = n == 0 || c == 0 ? 0 : static_cast<int64_t>(logp.size()) / (n * c);
  std::vector<int64_t> t = tensor_to_int64s(target, node);
  std::vector<double> w = weight ? read_doubles(*weight, node) : std::vector<double>{};
  const bool has_ii = attrs.ignore_index.has_value();
  const int64_t ii = attrs.ignore_index.value_or(0);
  std::vector<double> loss(t.size(), 0.0);
  double weight_sum = 0;
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t j = 0; j < d; ++j) {
      size_t k = static_cast<size_t>(b * d + j);
      int64_t cls = t[k];
      if (has_ii && cls == ii) continue;
      TANDEM_CHECK(cls >= 0 && cls < c, ErrorCode::kInvalidArgument,
                   "{}: target value {} at index {} is outside [0, {})", node.describe(), cls, k,
                   c);
      double wt = weight ? w[static_cast<size_t>(cls)] : 1.0;
      loss[k] = -logp[static_cast<size_t>((b * c + cls) * d + j)] * wt;
      weight_sum += wt;
    }
  }
  const std::string& reduction = attrs.reduction;
  if (reduction == "none") {
    write_doubles(out, loss, node);
    return;
  }
  double sum = 0;
  for (double v : loss) sum += v;
  // A mean over no counted element is 0/0 = NaN, as in the ONNX reference.
  double r = reduction == "sum"
                 ? sum
                 : (weight_sum == 0 ? std::numeric_limits<double>::quiet_NaN() : sum / weight_sum);
  write_doubles(out, {r}, node);
}

void nll_kernel(const KernelContext& ctx, const LossAttrs& attrs,
                std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Tensor& x = *inputs[0];
  nll(ctx.node, attrs, read_doubles(x, ctx.node), x.shape(), *inputs[1],
      inputs.size() > 2 ? inputs[2] : nullptr, *outputs[0]);
}

// log_softmax over axis 1 of [N, C, D], then NLL; the log-probabilities are output 1.
void sce_kernel(const KernelContext& ctx, const LossAttrs& attrs,
                std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Tensor& x = *inputs[0];
  std::vector<double> v = read_doubles(x, ctx.node);
  const int64_t n = x.dim(0), c = x.dim(1);
  const int64_t d = n == 0 || c == 0 ? 0 : x.numel() / (n * c);
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t j = 0; j < d; ++j) {
      auto at = [&](int64_t k) -> double& { return v[static_cast<size_t>((b * c + k) * d + j)]; };
      double mx = at(0);
      for (int64_t k = 1; k < c; ++k) mx = std::max(mx, at(k));
      double sum = 0;
      for (int64_t k = 0; k < c; ++k) sum += std::exp(at(k) - mx);
      double lse = mx + std::log(sum);
      for (int64_t k = 0; k < c; ++k) at(k) -= lse;
    }
  }
  nll(ctx.node, attrs, v, x.shape(), *inputs[1], inputs.size() > 2 ? inputs[2] : nullptr,
      *outputs[0]);
  if (outputs.size() > 1 && outputs[1]) write_doubles(*outputs[1], v, ctx.node);
}

}  // namespace

void register_loss_ref_kernels(KernelRegistry& r) {
  r.add("NegativeLogLikelihoodLoss", nll_kernel);
  r.add("SoftmaxCrossEntropyLoss", sce_kernel);
}

}  // namespace tandem

// The CPU backend's elementwise activations: oneDNN's eltwise_forward, float32.
//
// Only ops whose oneDNN 2.6 definition is the ONNX one are listed: Sigmoid (logistic), Tanh,
// Relu, LeakyRelu (relu with a negative slope), Elu, Exp, Sqrt, Abs, HardSwish
// (x * min(max(x + 3, 0), 6) / 6 = ONNX's x * max(0, min(1, x / 6 + 1 / 2))), Softplus
// (soft_relu, log(1 + exp(x)) in 2.6) and Clip with constant bounds (clip: max(lo, min(hi, x))).
// Erf has no oneDNN eltwise; the CPU backend's Erf is a vector loop in gelu.cc. Log stays on the
// reference backend: oneDNN's eltwise_log is a polynomial approximation that is not exact where
// it matters (log(1) comes out ~1e-7 from 0, which fails ONNX's test_log_example at atol 1e-7).
//
// The op does not care about the shape, so the tensor is described to oneDNN as one flat
// [numel] row and the kernel keeps one primitive per element count. Other dtypes are declined at
// factory time when the graph shows them and run on the reference kernel when seen at run time.
#include <cmath>
#include <limits>
#include <optional>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "core/error.h"
#include "ops/activation.h"
#include "ops/fused_activation.h"
#include "ops/shape_utils.h"

namespace tandem::cpu {

namespace {

using dnnl::memory;
using Dt = memory::data_type;
using Alg = dnnl::algorithm;

struct EltwisePlan {
  memory::desc md;
  dnnl::eltwise_forward prim;
  memory scratch;  // the primitive's scratchpad (user mode)
};

// One plan per element count.
class EltwiseKernel : public DnnlKernel<int64_t, EltwisePlan> {
 public:
  EltwiseKernel(const Node& node, Alg alg, float alpha, float beta)
      : DnnlKernel(node, "eltwise"), alg_(alg), alpha_(alpha), beta_(beta) {}

  // oneDNN's eltwise runs in place (src and dst the same buffer).
  int in_place_input(std::span<const TensorType* const> inputs,
                     const TensorType& output) const override {
    return !inputs.empty() && inputs[0] && inputs[0]->dtype == DataType::kFloat32 &&
                   output.dtype == DataType::kFloat32
               ? 0
               : -1;
  }

 private:
  bool applies(const Call& c) const override {
    const Tensor* x = c.in(0);
    const Tensor* y = c.out(0);
    return x && y && x->dtype() == DataType::kFloat32 && y->dtype() == DataType::kFloat32 &&
           x->numel() != 0 && x->numel() == y->numel();
  }

  int threads(const Call& c) const override {
    return threads_for(c.ctx, static_cast<double>(c.in(0)->numel()));
  }

  int64_t key(const Call& c, int) const override { return c.in(0)->numel(); }

  std::optional<EltwisePlan> make_plan(const Call& c) const override {
    EltwisePlan p;
    p.md = memory::desc({c.in(0)->numel()}, Dt::f32, memory::format_tag::a);
    dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, alg_, p.md, alpha_, beta_);
    dnnl::eltwise_forward::primitive_desc pd(d, user_scratchpad(), engine());
    p.prim = dnnl::eltwise_forward(pd);
    p.scratch = make_scratchpad(pd.scratchpad_desc());
    return p;
  }

  void run(const Call& c, EltwisePlan& p) override {
    execute_src_dst(p.prim, p.md, c.in(0)->data<float>(), c.out(0)->data<float>(), p.scratch);
  }

  Alg alg_;
  float alpha_, beta_;
};

// Whether the graph already shows a dtype other than float32 for input 0.
bool not_float32(const Node& node) {
  return !node.has_input(0) || known_not_float32(node.inputs[0]);
}

KernelFactory simple(Alg alg, float alpha = 0.0f, float beta = 0.0f) {
  return [alg, alpha, beta](const Node& node) -> std::unique_ptr<Kernel> {
    if (not_float32(node)) return nullptr;
    return std::make_unique<EltwiseKernel>(node, alg, alpha, beta);
  };
}

std::unique_ptr<Kernel> make_leaky_relu(const Node& node) {
  if (not_float32(node)) return nullptr;
  return std::make_unique<EltwiseKernel>(node, Alg::eltwise_relu,
                                         ActivationAttrs::parse(node).alpha, 0.0f);
}

std::unique_ptr<Kernel> make_elu(const Node& node) {
  if (not_float32(node)) return nullptr;
  return std::make_unique<EltwiseKernel>(node, Alg::eltwise_elu, ActivationAttrs::parse(node).alpha,
                                         0.0f);
}

// Clip: bounds from attributes (opset < 11) or from constant inputs (opset >= 11). A bound
// computed at run time, or lo > hi (where oneDNN's max(lo, min(hi, x)) and ONNX's
// min(hi, max(lo, x)) differ), goes to the reference backend.
std::unique_ptr<Kernel> make_clip(const Node& node) {
  if (not_float32(node)) return nullptr;
  // Unbounded: +-inf, so infinities pass through (as in the reference kernel).
  float lo = 0, hi = 0;
  if (!static_clip_bounds(node, lo, hi) || lo > hi) return nullptr;
  return std::make_unique<EltwiseKernel>(node, Alg::eltwise_clip, lo, hi);
}

}  // namespace

void register_eltwise_kernels(KernelRegistry& r) {
  r.add("Sigmoid", simple(Alg::eltwise_logistic));
  r.add("Tanh", simple(Alg::eltwise_tanh));
  r.add("Relu", simple(Alg::eltwise_relu));
  r.add("Exp", simple(Alg::eltwise_exp));
  r.add("Sqrt", simple(Alg::eltwise_sqrt));
  r.add("Abs", simple(Alg::eltwise_abs));
  r.add("HardSwish", simple(Alg::eltwise_hardswish));
  r.add("Softplus", simple(Alg::eltwise_soft_relu));
  r.add("LeakyRelu", make_leaky_relu);
  r.add("Elu", make_elu);
  r.add("Clip", make_clip);
}

}  // namespace tandem::cpu

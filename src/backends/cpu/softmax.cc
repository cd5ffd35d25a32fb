// The CPU backend's Softmax and LogSoftmax: oneDNN's softmax_forward / logsoftmax_forward,
// float32 (oneDNN subtracts the maximum first, so large inputs are safe).
//
// Opset >= 13: the op normalises along one axis (default -1); the tensor is described to oneDNN
// as it is, with that axis. Opset < 13: the input is coerced to 2-D [prod(dims before axis),
// prod(dims from axis)] (default axis 1) and normalised along the second dimension; the same
// buffer described as that 2-D tensor gives exactly these semantics, so every axis is handled.
//
// One primitive per input shape. Other dtypes, empty tensors and primitives oneDNN cannot build
// run on the reference kernel.
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_util.h"
#include "core/error.h"
#include "ops/shape_utils.h"

namespace tandem::cpu {

namespace {

using dnnl::memory;
using Dt = memory::data_type;

struct SoftmaxPlan {
  bool use_reference = false;  // oneDNN could not build a primitive for it
  memory::desc md;
  dnnl::primitive prim;
  memory scratch;  // the primitive's scratchpad (user mode)
};

class SoftmaxKernel : public Kernel {
 public:
  SoftmaxKernel(const Node& node, bool log)
      : ref_(make_reference_kernel(node)),
        log_(log),
        legacy_(node.opset < 13),
        axis_(node.attr_int_or("axis", node.opset < 13 ? 1 : -1)) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor* x = inputs.empty() ? nullptr : inputs[0];
    Tensor* y = outputs.empty() ? nullptr : outputs[0];
    if (!x || !y || x->dtype() != DataType::kFloat32 || y->dtype() != DataType::kFloat32 ||
        x->numel() == 0 || x->rank() == 0 || x->rank() > DNNL_MAX_NDIMS ||
        x->shape() != y->shape()) {
      note_reference_fallback();
      ref_->compute(ctx, inputs, outputs);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    set_threads(
        threads_for(ctx, static_cast<double>(x->numel())));  // before oneDNN makes the primitive
    SoftmaxPlan& p = plan_for(ctx.node, x->shape());
    if (p.use_reference) {
      note_reference_fallback();
      ref_->compute(ctx, inputs, outputs);
      return;
    }
    execute_src_dst(ctx, p.prim, p.md, x->data<float>(), y->data<float>(), "softmax", p.scratch);
  }

 private:
  SoftmaxPlan& plan_for(const Node& node, const Shape& shape) {
    auto it = plans_.find(shape);
    if (it != plans_.end()) return it->second;
    if (plans_.size() >= kMaxPlans) plans_.clear();  // shapes keep changing: start over
    const int64_t rank = static_cast<int64_t>(shape.size());
    const int64_t axis = normalize_axis(axis_, rank, node);  // throws, naming the node
    memory::dims dims;
    int op_axis = 0;
    if (legacy_) {
      int64_t outer = 1, inner = 1;
      for (int64_t d = 0; d < rank; ++d) (d < axis ? outer : inner) *= shape[d];
      dims = {outer, inner};
      op_axis = 1;
    } else {
      dims = to_dims(shape);
      op_axis = static_cast<int>(axis);
    }
    SoftmaxPlan p;
    try {
      p.md = memory::desc(dims, Dt::f32, row_major(dims));
      const auto prop = dnnl::prop_kind::forward_inference;
      if (log_) {
        dnnl::logsoftmax_forward::desc d(prop, p.md, op_axis);
        dnnl::logsoftmax_forward::primitive_desc pd(d, user_scratchpad(), engine());
        p.prim = dnnl::logsoftmax_forward(pd);
        p.scratch = make_scratchpad(pd.scratchpad_desc());
      } else {
        dnnl::softmax_forward::desc d(prop, p.md, op_axis);
        dnnl::softmax_forward::primitive_desc pd(d, user_scratchpad(), engine());
        p.prim = dnnl::softmax_forward(pd);
        p.scratch = make_scratchpad(pd.scratchpad_desc());
      }
    } catch (const dnnl::error&) {
      p = SoftmaxPlan{};
      p.use_reference = true;
    }
    return plans_[shape] = std::move(p);
  }

  static constexpr size_t kMaxPlans = 16;
  std::unique_ptr<Kernel> ref_;
  bool log_;
  bool legacy_;  // opset < 13: coerce to 2-D
  int64_t axis_;
  std::mutex mu_;
  std::map<Shape, SoftmaxPlan> plans_;
};

// Declines (nullptr → the reference backend) an input the graph shows is not float32.
std::unique_ptr<Kernel> make_softmax_like(const Node& node, bool log) {
  if (!node.has_input(0) || known_not_float32(node.inputs[0])) return nullptr;
  return std::make_unique<SoftmaxKernel>(node, log);
}

std::unique_ptr<Kernel> make_softmax(const Node& node) {
  return make_softmax_like(node, false);
}
std::unique_ptr<Kernel> make_log_softmax(const Node& node) {
  return make_softmax_like(node, true);
}

}  // namespace

void register_softmax_kernels(KernelRegistry& r) {
  r.add("Softmax", make_softmax);
  r.add("LogSoftmax", make_log_softmax);
}

}  // namespace tandem::cpu

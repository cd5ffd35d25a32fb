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
#include "ops/softmax.h"

#include <optional>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "core/error.h"

namespace tandem::cpu {

namespace {

using dnnl::memory;
using Dt = memory::data_type;

struct SoftmaxPlan {
  memory::desc md;
  dnnl::primitive prim;
  memory scratch;  // the primitive's scratchpad (user mode)
};

// One plan per input shape.
class SoftmaxKernel : public DnnlKernel<Shape, SoftmaxPlan> {
 public:
  SoftmaxKernel(const Node& node, bool log)
      : DnnlKernel(node, "softmax"), log_(log), attrs_(SoftmaxAttrs::parse(node)) {}

 private:
  bool applies(const Call& c) const override {
    const Tensor* x = c.in(0);
    const Tensor* y = c.out(0);
    return x && y && x->dtype() == DataType::kFloat32 && y->dtype() == DataType::kFloat32 &&
           x->numel() != 0 && x->rank() != 0 && x->rank() <= DNNL_MAX_NDIMS &&
           x->shape() == y->shape();
  }

  int threads(const Call& c) const override {
    return threads_for(c.ctx, static_cast<double>(c.in(0)->numel()));
  }

  Shape key(const Call& c, int) const override { return c.in(0)->shape(); }

  std::optional<SoftmaxPlan> make_plan(const Call& c) const override {
    const Shape& shape = c.in(0)->shape();
    const SoftmaxRows rows = attrs_.rows(shape, c.node());  // throws, naming the node
    memory::dims dims;
    int op_axis = 0;
    if (attrs_.coerce_to_2d) {
      dims = {rows.outer, rows.n};
      op_axis = 1;
    } else {
      dims = to_dims(shape);
      op_axis = static_cast<int>(rows.axis);
    }
    SoftmaxPlan p;
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
    return p;
  }

  void run(const Call& c, SoftmaxPlan& p) override {
    execute_src_dst(p.prim, p.md, c.in(0)->data<float>(), c.out(0)->data<float>(), p.scratch);
  }

  bool log_;
  SoftmaxAttrs attrs_;
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

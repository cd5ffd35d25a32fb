// The CPU backend's Add, Sub, Mul, Div: oneDNN's binary primitive, float32, numpy broadcasting.
//
// oneDNN 2.6 broadcasts only its second source (each dim equal to the first's or 1, same rank).
// Both operands' ranks are padded with leading 1s to the output's rank. When B broadcasts to A's
// shape, A is src0 and B src1; when instead A broadcasts to B's shape and the op commutes (Add,
// Mul), the operands are swapped. Everything else (both operands broadcast, or A broadcasts in a
// Sub or Div) runs on the reference kernel, as do other dtypes and empty tensors.
//
// One primitive per (A shape, B shape).
#include <algorithm>
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
using Alg = dnnl::algorithm;

struct BinaryPlan {
  bool use_reference = false;  // not expressible, or oneDNN could not build a primitive
  bool swap = false;           // src0 is B, src1 is A
  memory::desc src0_md, src1_md, dst_md;
  dnnl::binary prim;
};

// Whether `small` (same rank) broadcasts to `big`: each dim equal or 1.
bool broadcasts_to(const Shape& small, const Shape& big) {
  for (size_t i = 0; i < big.size(); ++i)
    if (small[i] != big[i] && small[i] != 1) return false;
  return true;
}

class BinaryKernel : public Kernel {
 public:
  BinaryKernel(const Node& node, Alg alg, bool commutes)
      : ref_(make_reference_kernel(node)), alg_(alg), commutes_(commutes) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor* a = inputs.size() > 0 ? inputs[0] : nullptr;
    const Tensor* b = inputs.size() > 1 ? inputs[1] : nullptr;
    Tensor* y = outputs.empty() ? nullptr : outputs[0];
    if (!a || !b || !y || a->dtype() != DataType::kFloat32 || b->dtype() != DataType::kFloat32 ||
        y->dtype() != DataType::kFloat32 || y->numel() == 0 || a->numel() == 0 || b->numel() == 0 ||
        y->rank() > DNNL_MAX_NDIMS || a->rank() > y->rank() || b->rank() > y->rank()) {
      note_reference_fallback();
      ref_->compute(ctx, inputs, outputs);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    BinaryPlan& p = plan_for(a->shape(), b->shape(), y->shape());
    if (p.use_reference) {
      note_reference_fallback();
      ref_->compute(ctx, inputs, outputs);
      return;
    }
    set_threads(threads_for(ctx, static_cast<double>(y->numel())));
    dnnl::stream& s = stream();
    try {
      const Tensor* s0 = p.swap ? b : a;
      const Tensor* s1 = p.swap ? a : b;
      memory m0(p.src0_md, engine(), const_cast<float*>(s0->data<float>()));
      memory m1(p.src1_md, engine(), const_cast<float*>(s1->data<float>()));
      memory dst(p.dst_md, engine(), y->data<float>());
      p.prim.execute(s, {{DNNL_ARG_SRC_0, m0}, {DNNL_ARG_SRC_1, m1}, {DNNL_ARG_DST, dst}});
      s.wait();
    } catch (const dnnl::error& e) {
      raise(ErrorCode::kInternal, "{}: oneDNN binary failed: {}", ctx.node.describe(), e.what());
    }
  }

 private:
  BinaryPlan& plan_for(const Shape& as, const Shape& bs, const Shape& ys) {
    std::vector<int64_t> key = as;
    key.push_back(-1);
    key.insert(key.end(), bs.begin(), bs.end());
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
    if (plans_.size() >= kMaxPlans) plans_.clear();  // shapes keep changing: start over
    return plans_[key] = make_plan(as, bs, ys);
  }

  BinaryPlan make_plan(const Shape& as, const Shape& bs, const Shape& ys) const {
    BinaryPlan p;
    // A rank-0 output is computed as [1].
    Shape y = ys.empty() ? Shape{1} : ys;
    Shape a = as, b = bs;
    a.insert(a.begin(), y.size() - a.size(), 1);
    b.insert(b.begin(), y.size() - b.size(), 1);
    if (a == y && broadcasts_to(b, y)) {
      p.swap = false;
    } else if (commutes_ && b == y && broadcasts_to(a, y)) {
      p.swap = true;
      std::swap(a, b);
    } else {
      p.use_reference = true;
      return p;
    }
    try {
      memory::dims d0 = to_dims(a), d1 = to_dims(b), dy = to_dims(y);
      p.src0_md = memory::desc(d0, Dt::f32, row_major(d0));
      p.src1_md = memory::desc(d1, Dt::f32, row_major(d1));
      p.dst_md = memory::desc(dy, Dt::f32, row_major(dy));
      dnnl::binary::desc d(alg_, p.src0_md, p.src1_md, p.dst_md);
      p.prim = dnnl::binary(dnnl::binary::primitive_desc(d, engine()));
    } catch (const dnnl::error&) {
      BinaryPlan fallback;
      fallback.use_reference = true;
      return fallback;
    }
    return p;
  }

  static constexpr size_t kMaxPlans = 16;
  std::unique_ptr<Kernel> ref_;
  Alg alg_;
  bool commutes_;
  std::mutex mu_;
  std::map<std::vector<int64_t>, BinaryPlan> plans_;
};

// Declines (nullptr → the reference backend) operands the graph shows are not float32.
KernelFactory binary_factory(Alg alg, bool commutes) {
  return [alg, commutes](const Node& node) -> std::unique_ptr<Kernel> {
    if (!node.has_input(0) || !node.has_input(1)) return nullptr;
    if (known_not_float32(node.inputs[0]) || known_not_float32(node.inputs[1])) return nullptr;
    return std::make_unique<BinaryKernel>(node, alg, commutes);
  };
}

}  // namespace

void register_binary_kernels(KernelRegistry& r) {
  r.add("Add", binary_factory(Alg::binary_add, true));
  r.add("Sub", binary_factory(Alg::binary_sub, false));
  r.add("Mul", binary_factory(Alg::binary_mul, true));
  r.add("Div", binary_factory(Alg::binary_div, false));
}

}  // namespace tandem::cpu

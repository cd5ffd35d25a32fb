// The CPU backend's Add, Sub, Mul, Div for float32 with numpy broadcasting: hand-written loops.
//
// Why not oneDNN's binary primitive: it only broadcasts its second source, and its per-call cost
// (memory objects, argument map, stream) dominates at the sizes transformer and RNN graphs are
// full of (bias adds over a few hundred floats). These ops are memory-bound, so a plain
// vectorised loop is as fast as anything on large tensors too.
//
// The shapes are brought to a canonical form once per (A shape, B shape): ranks padded with
// leading 1s, then adjacent dims merged while each operand either broadcasts over both or over
// neither. What is left is a short loop nest whose innermost level reads each operand either
// contiguously or as one repeated value — four vectorisable inner loops. Large outputs are split
// over the session's threads along the outer iterations.
#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "core/error.h"

namespace tandem::cpu {

namespace {

struct AddOp {
  static float apply(float a, float b) { return a + b; }
};
struct SubOp {
  static float apply(float a, float b) { return a - b; }
};
struct MulOp {
  static float apply(float a, float b) { return a * b; }
};
struct DivOp {
  static float apply(float a, float b) { return a / b; }
};

// The loop nest for one (A shape, B shape): dims[0] is the innermost, then outward. a_stride and
// b_stride are each operand's element stride per dim (0 where it broadcasts).
struct BroadcastPlan {
  std::vector<int64_t> dims;
  std::vector<int64_t> a_stride, b_stride;
  int64_t inner = 1;  // dims[0]
  int64_t outer = 1;  // product of the other dims
};

BroadcastPlan make_plan(const Shape& as, const Shape& bs, const Shape& ys) {
  const size_t r = std::max<size_t>(ys.size(), 1);
  Shape y = ys.empty() ? Shape{1} : ys, a = as, b = bs;
  a.insert(a.begin(), r - a.size(), 1);
  b.insert(b.begin(), r - b.size(), 1);
  // Innermost first. A dim of size 1 in the output fits any pattern, so it is dropped.
  std::vector<int64_t> dims;
  std::vector<bool> a_bc, b_bc;  // operand broadcasts along this merged dim
  for (size_t k = r; k-- > 0;) {
    if (y[k] == 1) continue;
    bool ab = a[k] == 1, bb = b[k] == 1;
    if (!dims.empty() && a_bc.back() == ab && b_bc.back() == bb) {
      dims.back() *= y[k];
    } else {
      dims.push_back(y[k]);
      a_bc.push_back(ab);
      b_bc.push_back(bb);
    }
  }
  BroadcastPlan p;
  if (dims.empty()) {  // every dim is 1
    dims.push_back(1);
    a_bc.push_back(false);
    b_bc.push_back(false);
  }
  int64_t as_ = 1, bs_ = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    p.a_stride.push_back(a_bc[i] ? 0 : as_);
    p.b_stride.push_back(b_bc[i] ? 0 : bs_);
    if (!a_bc[i]) as_ *= dims[i];
    if (!b_bc[i]) bs_ *= dims[i];
  }
  p.dims = dims;
  p.inner = dims[0];
  for (size_t i = 1; i < dims.size(); ++i) p.outer *= dims[i];
  return p;
}

template <typename Op>
// y may be a (or b) itself when computed in place: element i is read before it is written.
void inner_loop(const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n) {
  if (sa && sb) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = Op::apply(a[i], b[i]);
  } else if (sa) {
    const float bv = b[0];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = Op::apply(a[i], bv);
  } else if (sb) {
    const float av = a[0];
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = Op::apply(av, b[i]);
  } else {
    const float v = Op::apply(a[0], b[0]);
    std::fill(y, y + n, v);
  }
}

// Outer iterations [begin, end) of the plan.
template <typename Op>
void run_range(const BroadcastPlan& p, const float* a, const float* b, float* y, int64_t begin,
               int64_t end) {
  const size_t nd = p.dims.size();
  // Offsets of outer iteration `begin`, then advanced like an odometer.
  std::vector<int64_t> idx(nd, 0);
  int64_t ao = 0, bo = 0, rest = begin;
  for (size_t d = 1; d < nd; ++d) {
    idx[d] = rest % p.dims[d];
    rest /= p.dims[d];
    ao += idx[d] * p.a_stride[d];
    bo += idx[d] * p.b_stride[d];
  }
  const int64_t sa = p.a_stride[0], sb = p.b_stride[0];
  for (int64_t it = begin; it < end; ++it) {
    inner_loop<Op>(a + ao, sa, b + bo, sb, y + it * p.inner, p.inner);
    for (size_t d = 1; d < nd; ++d) {
      ++idx[d];
      ao += p.a_stride[d];
      bo += p.b_stride[d];
      if (idx[d] < p.dims[d]) break;
      ao -= idx[d] * p.a_stride[d];
      bo -= idx[d] * p.b_stride[d];
      idx[d] = 0;
    }
  }
}

// Below this many output elements one thread does it all: a parallel region costs more.
constexpr int64_t kParallelThreshold = 1 << 15;

template <typename Op>
class BinaryKernel : public FallbackKernel {
 public:
  explicit BinaryKernel(const Node& node) : FallbackKernel(node) {}

  // In place over an operand of the output's own shape (it is read only at the index written).
  int in_place_input(std::span<const TensorType* const> inputs,
                     const TensorType& output) const override {
    if (output.dtype != DataType::kFloat32 || inputs.size() < 2) return -1;
    for (int i = 0; i < 2; ++i)
      if (inputs[i] && inputs[i]->dtype == DataType::kFloat32 && inputs[i]->shape == output.shape)
        return i;
    return -1;
  }

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor* a = inputs.size() > 0 ? inputs[0] : nullptr;
    const Tensor* b = inputs.size() > 1 ? inputs[1] : nullptr;
    Tensor* y = outputs.empty() ? nullptr : outputs[0];
    if (!a || !b || !y || a->dtype() != DataType::kFloat32 || b->dtype() != DataType::kFloat32 ||
        y->dtype() != DataType::kFloat32 || a->rank() > y->rank() || b->rank() > y->rank()) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    if (y->numel() == 0) return;
    const BroadcastPlan& p = plan_for(a->shape(), b->shape(), y->shape());
    const float* ad = a->data<float>();
    const float* bd = b->data<float>();
    float* yd = y->data<float>();
    if (y->numel() < kParallelThreshold || ctx.pool.size() == 1 || p.outer == 1) {
      run_range<Op>(p, ad, bd, yd, 0, p.outer);
      return;
    }
    ctx.pool.parallel_for(
        p.outer, [&](int64_t begin, int64_t end) { run_range<Op>(p, ad, bd, yd, begin, end); });
  }

 private:
  // One plan per (A shape, B shape). Most nodes see one pair for their whole life: the latest
  // is checked first, without building a key.
  const BroadcastPlan& plan_for(const Shape& as, const Shape& bs, const Shape& ys) {
    std::lock_guard<std::mutex> lock(mu_);
    auto same = [&](const std::pair<Shape, Shape>& k) { return k.first == as && k.second == bs; };
    if (const BroadcastPlan* last = plans_.last_if(same)) return *last;
    return plans_.get({as, bs}, [&] { return make_plan(as, bs, ys); });
  }

  std::mutex mu_;
  PlanCache<std::pair<Shape, Shape>, BroadcastPlan> plans_;
};

// Declines (nullptr → the reference backend) operands the graph shows are not float32.
template <typename Op>
std::unique_ptr<Kernel> make_binary(const Node& node) {
  if (!node.has_input(0) || !node.has_input(1)) return nullptr;
  if (known_not_float32(node.inputs[0]) || known_not_float32(node.inputs[1])) return nullptr;
  return std::make_unique<BinaryKernel<Op>>(node);
}

}  // namespace

void register_binary_kernels(KernelRegistry& r) {
  r.add("Add", make_binary<AddOp>);
  r.add("Sub", make_binary<SubOp>);
  r.add("Mul", make_binary<MulOp>);
  r.add("Div", make_binary<DivOp>);
}

}  // namespace tandem::cpu

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
// contiguously or as one repeated value — four vectorisable inner loops, compiled at each vector
// width (simd.h: a plain loop here is SSE code only). Large outputs are split over the session's
// threads along the outer iterations.
#include <algorithm>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "backends/cpu/simd.h"
#include "core/error.h"

// Vector helpers are always inlined into bodies compiled for their width (simd.h): the
// calling-convention note GCC gives for wide vectors does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace tandem::cpu {

namespace {

// Each op on one float or on a vector of floats (GCC vector extensions, simd.h).
struct AddOp {
  template <class T>
  static TANDEM_SIMD_INLINE T apply(T a, T b) {
    return a + b;
  }
};
struct SubOp {
  template <class T>
  static TANDEM_SIMD_INLINE T apply(T a, T b) {
    return a - b;
  }
};
struct MulOp {
  template <class T>
  static TANDEM_SIMD_INLINE T apply(T a, T b) {
    return a * b;
  }
};
struct DivOp {
  template <class T>
  static TANDEM_SIMD_INLINE T apply(T a, T b) {
    return a / b;
  }
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

// y[i] = a[i * sa] op b[i * sb] for i < n, each stride 0 or 1, in vectors of V. y may be a (or
// b) itself when computed in place: element i is read before it is written.
template <class V, typename Op, bool kA, bool kB>
TANDEM_SIMD_INLINE void inner_loop_strided(const float* a, const float* b, float* y, int64_t n) {
  using namespace simd;
  constexpr int64_t L = lanes<V>;
  const int64_t full = n / L * L, tail = n - full;
  const V av = splat<V>(a[0]), bv = splat<V>(b[0]);
  for (int64_t i = 0; i < full; i += L)
    store(y + i, Op::apply(kA ? load<V>(a + i) : av, kB ? load<V>(b + i) : bv));
  if (tail) {
    const V l = kA ? load_partial<V>(a + full, tail, 1.0f) : av;
    const V r = kB ? load_partial<V>(b + full, tail, 1.0f) : bv;
    store_partial(y + full, Op::apply(l, r), tail);
  }
}

template <class V, typename Op>
TANDEM_SIMD_INLINE void inner_loop(const float* a, int64_t sa, const float* b, int64_t sb, float* y,
                                   int64_t n) {
  if (sa && sb) {
    inner_loop_strided<V, Op, true, true>(a, b, y, n);
  } else if (sa) {
    inner_loop_strided<V, Op, true, false>(a, b, y, n);
  } else if (sb) {
    inner_loop_strided<V, Op, false, true>(a, b, y, n);
  } else {
    const float v = Op::apply(a[0], b[0]);
    std::fill(y, y + n, v);
  }
}

// Outer iterations [begin, end) of the plan.
template <class V, typename Op>
TANDEM_SIMD_INLINE void run_range(const BroadcastPlan& p, const float* a, const float* b, float* y,
                                  int64_t begin, int64_t end) {
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
    inner_loop<V, Op>(a + ao, sa, b + bo, sb, y + it * p.inner, p.inner);
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

// run_range at the widest vectors the CPU has, one dispatching function per op.
#define TANDEM_BINARY_RANGE(name, Op)                                                         \
  template <class V>                                                                          \
  TANDEM_SIMD_INLINE void name##_body(const BroadcastPlan* p, const float* a, const float* b, \
                                      float* y, int64_t begin, int64_t end) {                 \
    run_range<V, Op>(*p, a, b, y, begin, end);                                                \
  }                                                                                           \
  TANDEM_SIMD_DISPATCH(name,                                                                  \
                       (const BroadcastPlan* p, const float* a, const float* b, float* y,     \
                        int64_t begin, int64_t end),                                          \
                       (p, a, b, y, begin, end))
TANDEM_BINARY_RANGE(add_range, AddOp)
TANDEM_BINARY_RANGE(sub_range, SubOp)
TANDEM_BINARY_RANGE(mul_range, MulOp)
TANDEM_BINARY_RANGE(div_range, DivOp)
#undef TANDEM_BINARY_RANGE

using RangeFn = void (*)(const BroadcastPlan*, const float*, const float*, float*, int64_t,
                         int64_t);
template <typename Op>
constexpr RangeFn range_fn() {
  if constexpr (std::is_same_v<Op, AddOp>) return add_range;
  if constexpr (std::is_same_v<Op, SubOp>) return sub_range;
  if constexpr (std::is_same_v<Op, MulOp>) return mul_range;
  return div_range;
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
    constexpr RangeFn range = range_fn<Op>();
    if (y->numel() < kParallelThreshold || ctx.pool.size() == 1 || p.outer == 1) {
      range(&p, ad, bd, yd, 0, p.outer);
      return;
    }
    ctx.pool.parallel_for(p.outer,
                          [&](int64_t begin, int64_t end) { range(&p, ad, bd, yd, begin, end); });
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

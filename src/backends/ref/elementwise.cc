// Reference kernels of the elementwise family: unary math, broadcasting binary arithmetic,
// comparisons and logic, the variadic Max/Min/Sum/Mean, and Where.
//
// One generic engine serves every op: unary_map / binary_map / where_map walk the tensors (a flat
// loop when shapes agree or one side is a scalar, else a row-by-row walk with broadcast strides)
// and call a small functor per element. float16/bfloat16 are computed in float32 (HalfAsFloat).
#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "core/dtype_visit.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/legacy.h"
#include "ops/shape_utils.h"

namespace tandem {
namespace {

// Below this many elements a loop stays on the calling thread: waking the pool costs more.
constexpr int64_t kParallelGrain = 1 << 15;

// Runs body(begin, end) over [0, n): on the pool when `work` (elements touched) is large.
template <typename Body>
void run_chunks(const KernelContext& ctx, int64_t n, int64_t work, const Body& body) {
  if (n <= 0) return;
  if (n > 1 && work >= kParallelGrain && ctx.pool.size() > 1) {
    ctx.pool.parallel_for(n, body);
  } else {
    body(0, n);
  }
}

// ---- Walking tensors

// Calls row(out_offset, len, offsets, steps) for each innermost row of `out_shape`: input k's
// elements of that row are at offsets[k] + j * steps[k] for j < len (steps[k] is 0 when input k
// is broadcast along the last dimension).
template <size_t N, typename Row>
void for_each_broadcast_row(const KernelContext& ctx, const Shape& out_shape,
                            const std::array<const Shape*, N>& in_shapes, const Row& row) {
  const int64_t total = shape_numel(out_shape);
  if (total == 0) return;
  const size_t rank = out_shape.size();
  std::array<std::vector<int64_t>, N> strides;
  std::array<int64_t, N> steps{};
  for (size_t k = 0; k < N; ++k) {
    strides[k] = broadcast_strides(*in_shapes[k], out_shape);
    steps[k] = rank ? strides[k][rank - 1] : 0;
  }
  const int64_t inner = rank ? out_shape[rank - 1] : 1;
  const size_t outer_rank = rank ? rank - 1 : 0;
  run_chunks(ctx, total / inner, total, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::array<int64_t, N> offsets{};
      int64_t rest = r;
      for (size_t d = outer_rank; d-- > 0;) {  // the row's index, innermost outer dim first
        const int64_t idx = rest % out_shape[d];
        rest /= out_shape[d];
        for (size_t k = 0; k < N; ++k) offsets[k] += idx * strides[k][d];
      }
      row(r * inner, inner, offsets, steps);
    }
  });
}

template <typename I, typename O, typename F>
void unary_map(const KernelContext& ctx, const Tensor& in, Tensor& out, const F& f) {
  const I* x = in.data<I>();
  O* y = out.data<O>();
  run_chunks(ctx, out.numel(), out.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = f(x[i]);
  });
}

// out = f(a, b) with numpy broadcasting; out already has the broadcast shape. `a` may alias out.
template <typename A, typename B, typename O, typename F>
void binary_map(const KernelContext& ctx, const Tensor& a, const Tensor& b, Tensor& out,
                const F& f) {
  const A* pa = a.data<A>();
  const B* pb = b.data<B>();
  O* po = out.data<O>();
  const int64_t n = out.numel();
  // An input with as many elements as the output has the output's shape (up to leading 1s).
  const bool a_full = a.numel() == n, b_full = b.numel() == n;
  if (a_full && b_full) {
    run_chunks(ctx, n, n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) po[i] = f(pa[i], pb[i]);
    });
  } else if (a_full && b.numel() == 1) {
    const B y = pb[0];
    run_chunks(ctx, n, n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) po[i] = f(pa[i], y);
    });
  } else if (b_full && a.numel() == 1) {
    const A x = pa[0];
    run_chunks(ctx, n, n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) po[i] = f(x, pb[i]);
    });
  } else {
    for_each_broadcast_row<2>(ctx, out.shape(), {&a.shape(), &b.shape()},
                              [&](int64_t o, int64_t len, const auto& off, const auto& step) {
                                for (int64_t j = 0; j < len; ++j)
                                  po[o + j] = f(pa[off[0] + j * step[0]], pb[off[1] + j * step[1]]);
                              });
  }
}

// Where's select, on raw element bits (T only needs the element size).
template <typename T>
void where_map(const KernelContext& ctx, const Tensor& cond, const Tensor& x, const Tensor& y,
               Tensor& out) {
  const bool* pc = cond.data<bool>();
  const T* px = x.data<T>();
  const T* py = y.data<T>();
  T* po = out.data<T>();
  const int64_t n = out.numel();
  if (cond.numel() == n && x.numel() == n && y.numel() == n) {
    run_chunks(ctx, n, n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) po[i] = pc[i] ? px[i] : py[i];
    });
    return;
  }
  for_each_broadcast_row<3>(ctx, out.shape(), {&cond.shape(), &x.shape(), &y.shape()},
                            [&](int64_t o, int64_t len, const auto& off, const auto& step) {
                              for (int64_t j = 0; j < len; ++j)
                                po[o + j] = pc[off[0] + j * step[0]] ? px[off[1] + j * step[1]]
                                                                     : py[off[2] + j * step[2]];
                            });
}

// Input B as the binary op broadcasts it: itself, except for opset < 7 nodes with broadcast = 1
// and an `axis`, where B is viewed with ones padded on both sides so that it lines up with A at
// `axis` (the schema inferred the output shape from the same view).
Tensor broadcast_operand_b(const Node& node, const Tensor& a, const Tensor& b) {
  return b.reshaped(legacy_broadcast_shape(node, a.shape(), b.shape()));
}

// ---- float16 / bfloat16: computed in float32

bool is_16bit_float(DataType d) {
  return d == DataType::kFloat16 || d == DataType::kBFloat16;
}

// A kernel's view of its tensors with every float16/bfloat16 one replaced by a float32 tensor:
// inputs are widened on construction, outputs are narrowed back by finish().
class HalfAsFloat {
 public:
  HalfAsFloat(std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs)
      : outputs_(outputs) {
    for (const Tensor* t : inputs) {
      if (!t) {
        ins_.emplace_back();
      } else if (!is_16bit_float(t->dtype())) {
        ins_.push_back(*t);  // shares the buffer
      } else {
        Tensor f(DataType::kFloat32, t->shape());
        const uint16_t* src = t->data<uint16_t>();
        float* dst = f.data<float>();
        const bool bf = t->dtype() == DataType::kBFloat16;
        for (int64_t i = 0; i < t->numel(); ++i)
          dst[i] = bf ? bfloat16_to_float(src[i]) : half_to_float(src[i]);
        ins_.push_back(std::move(f));
      }
    }
    for (Tensor* t : outputs) {
      if (t && is_16bit_float(t->dtype())) {
        outs_.emplace_back(DataType::kFloat32, t->shape());
      } else {
        outs_.push_back(t ? *t : Tensor());  // shares the buffer: results land in place
      }
    }
  }
  const Tensor& in(size_t i) const { return ins_[i]; }
  size_t num_inputs() const { return ins_.size(); }
  Tensor& out(size_t i) { return outs_[i]; }

  void finish() {
    for (size_t k = 0; k < outputs_.size(); ++k) {
      Tensor* t = outputs_[k];
      if (!t || !is_16bit_float(t->dtype())) continue;
      const float* src = outs_[k].data<float>();
      uint16_t* dst = t->data<uint16_t>();
      const bool bf = t->dtype() == DataType::kBFloat16;
      for (int64_t i = 0; i < t->numel(); ++i)
        dst[i] = bf ? float_to_bfloat16(src[i]) : float_to_half(src[i]);
    }
  }

 private:
  std::span<Tensor* const> outputs_;
  std::vector<Tensor> ins_, outs_;
};

// ---- dtype dispatch

enum class Domain { kFloat, kNumeric, kNumericOrBool, kBool, kUnsigned };

template <Domain D, typename F>
void dispatch_domain(DataType dtype, const Node& node, F&& f) {
  if constexpr (D == Domain::kFloat) {
    dispatch_float(dtype, node, f);
  } else if constexpr (D == Domain::kNumeric) {
    dispatch_numeric(dtype, node, f);
  } else if constexpr (D == Domain::kNumericOrBool) {
    if (dtype == DataType::kBool) {
      f(bool{});
    } else {
      dispatch_numeric(dtype, node, f);
    }
  } else if constexpr (D == Domain::kBool) {
    TANDEM_CHECK(dtype == DataType::kBool, ErrorCode::kUnsupported,
                 "{}: dtype {} is not supported (bool only)", node.describe(), dtype_name(dtype));
    f(bool{});
  } else {
    if (!visit_dtype<IsUnsignedInteger>(dtype, f))
      raise(ErrorCode::kUnsupported, "{}: dtype {} is not supported (unsigned integers only)",
            node.describe(), dtype_name(dtype));
  }
}

// Functors that need attributes (or the node, for error messages) take it in their constructor.
template <typename Op>
Op make_op(const Node& node) {
  if constexpr (std::is_constructible_v<Op, const Node&>) {
    return Op(node);
  } else {
    return Op{};
  }
}

// Two's-complement negation for integers (no overflow UB on the minimum value).
template <typename T>
T negate(T x) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(0u - static_cast<std::make_unsigned_t<T>>(x));
  } else {
    return -x;
  }
}

// double -> integer T, truncating toward zero; NaN gives 0 and out-of-range values saturate
// (the plain conversion would be undefined behaviour).
template <typename T>
T truncate_to(double v) {
  if (std::isnan(v)) return 0;
  if (v <= static_cast<double>(std::numeric_limits<T>::lowest()))
    return std::numeric_limits<T>::lowest();
  if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(v);
}

// ---- Unary functors

struct Abs {
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>) {
      return x;
    } else {
      return x < 0 ? negate(x) : x;
    }
  }
};
struct Neg {
  template <typename T>
  T operator()(T x) const {
    return negate(x);
  }
};
struct Sign {
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(x)) return x;
    }
    if constexpr (std::is_unsigned_v<T>) {
      return x > 0 ? 1 : 0;
    } else {
      return static_cast<T>(x > 0 ? 1 : x < 0 ? -1 : 0);
    }
  }
};
struct Exp {
  template <typename T>
  T operator()(T x) const {
    return std::exp(x);
  }
};
struct Log {
  template <typename T>
  T operator()(T x) const {
    return std::log(x);
  }
};
struct Sqrt {
  template <typename T>
  T operator()(T x) const {
    return std::sqrt(x);
  }
};
struct Reciprocal {
  template <typename T>
  T operator()(T x) const {
    return T(1) / x;
  }
};
struct Floor {
  template <typename T>
  T operator()(T x) const {
    return std::floor(x);
  }
};
struct Ceil {
  template <typename T>
  T operator()(T x) const {
    return std::ceil(x);
  }
};
// nearbyint in the default rounding mode rounds halves to even, as ONNX Round requires.
struct Round {
  template <typename T>
  T operator()(T x) const {
    return std::nearbyint(x);
  }
};
struct Sin {
  template <typename T>
  T operator()(T x) const {
    return std::sin(x);
  }
};
struct Cos {
  template <typename T>
  T operator()(T x) const {
    return std::cos(x);
  }
};
struct Tan {
  template <typename T>
  T operator()(T x) const {
    return std::tan(x);
  }
};
struct Asin {
  template <typename T>
  T operator()(T x) const {
    return std::asin(x);
  }
};
struct Acos {
  template <typename T>
  T operator()(T x) const {
    return std::acos(x);
  }
};
struct Atan {
  template <typename T>
  T operator()(T x) const {
    return std::atan(x);
  }
};
struct Sinh {
  template <typename T>
  T operator()(T x) const {
    return std::sinh(x);
  }
};
struct Cosh {
  template <typename T>
  T operator()(T x) const {
    return std::cosh(x);
  }
};
struct Asinh {
  template <typename T>
  T operator()(T x) const {
    return std::asinh(x);
  }
};
struct Acosh {
  template <typename T>
  T operator()(T x) const {
    return std::acosh(x);
  }
};
struct Atanh {
  template <typename T>
  T operator()(T x) const {
    return std::atanh(x);
  }
};
struct Erf {
  template <typename T>
  T operator()(T x) const {
    return std::erf(x);
  }
};
struct IsNaN {
  template <typename T>
  bool operator()(T x) const {
    return std::isnan(x);
  }
};
struct IsInf {
  explicit IsInf(const Node& node)
      : positive(node.attr_int_or("detect_positive", 1) != 0),
        negative(node.attr_int_or("detect_negative", 1) != 0) {}
  template <typename T>
  bool operator()(T x) const {
    return std::isinf(x) && (x > 0 ? positive : negative);
  }
  bool positive, negative;
};
struct Not {
  bool operator()(bool x) const { return !x; }
};

template <typename Op, Domain D>
void unary_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                  std::span<Tensor* const> outputs) {
  HalfAsFloat io(inputs, outputs);
  const Op op = make_op<Op>(ctx.node);
  dispatch_domain<D>(io.in(0).dtype(), ctx.node, [&](auto tag) {
    using T = decltype(tag);
    unary_map<T, decltype(op(T{}))>(ctx, io.in(0), io.out(0), op);
  });
  io.finish();
}

// ---- Binary functors

struct Add {
  template <typename T>
  T operator()(T x, T y) const {
    return x + y;
  }
};
struct Sub {
  template <typename T>
  T operator()(T x, T y) const {
    return x - y;
  }
};
struct Mul {
  template <typename T>
  T operator()(T x, T y) const {
    return x * y;
  }
};
struct Div {
  explicit Div(const Node& node) : node(&node) {}
  template <typename T>
  T operator()(T x, T y) const {
    if constexpr (std::is_integral_v<T>) {
      TANDEM_CHECK(y != 0, ErrorCode::kRuntime, "{}: integer division by zero", node->describe());
      if constexpr (std::is_signed_v<T>) {
        if (y == -1) return negate(x);  // min / -1 overflows
      }
    }
    return x / y;  // C++ integer division truncates toward zero, as ONNX specifies
  }
  const Node* node;
};
// fmod=1: the remainder has the dividend's sign (C fmod / %). fmod=0: the divisor's sign
// (Python's %); ONNX only defines that for integers, floats get the same rule here.
struct Mod {
  explicit Mod(const Node& node) : node(&node), c_style(node.attr_int_or("fmod", 0) != 0) {}
  template <typename T>
  T operator()(T x, T y) const {
    T r;
    if constexpr (std::is_floating_point_v<T>) {
      r = std::fmod(x, y);
    } else {
      TANDEM_CHECK(y != 0, ErrorCode::kRuntime, "{}: integer modulo by zero", node->describe());
      if constexpr (std::is_signed_v<T>) {
        if (y == -1) return 0;  // min % -1 overflows
      }
      r = static_cast<T>(x % y);
    }
    if constexpr (std::is_signed_v<T> || std::is_floating_point_v<T>) {
      if (!c_style && r != 0 && ((r < 0) != (y < 0))) r = static_cast<T>(r + y);
    }
    return r;
  }
  const Node* node;
  bool c_style;
};
struct BitShift {
  explicit BitShift(const Node& node) : left(node.attr_string_or("direction", "") == "LEFT") {
    const std::string dir = node.attr_string_or("direction", "");
    TANDEM_CHECK(dir == "LEFT" || dir == "RIGHT", ErrorCode::kInvalidModel,
                 "{}: direction must be \"LEFT\" or \"RIGHT\", got \"{}\"", node.describe(), dir);
  }
  template <typename T>
  T operator()(T x, T y) const {
    if (y >= std::numeric_limits<T>::digits) return 0;  // shifting everything out
    return static_cast<T>(left ? x << y : x >> y);
  }
  bool left;
};
// Max/Min propagate NaN, like numpy's maximum/minimum.
struct Max {
  template <typename T>
  T operator()(T x, T y) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(x)) return x;
    }
    return x > y ? x : y;
  }
};
struct Min {
  template <typename T>
  T operator()(T x, T y) const {
    if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(x)) return x;
    }
    return x < y ? x : y;
  }
};
struct Equal {
  template <typename T>
  bool operator()(T x, T y) const {
    return x == y;
  }
};
struct Less {
  template <typename T>
  bool operator()(T x, T y) const {
    return x < y;
  }
};
struct Greater {
  template <typename T>
  bool operator()(T x, T y) const {
    return x > y;
  }
};
struct LessOrEqual {
  template <typename T>
  bool operator()(T x, T y) const {
    return x <= y;
  }
};
struct GreaterOrEqual {
  template <typename T>
  bool operator()(T x, T y) const {
    return x >= y;
  }
};
struct And {
  bool operator()(bool x, bool y) const { return x && y; }
};
struct Or {
  bool operator()(bool x, bool y) const { return x || y; }
};
struct Xor {
  bool operator()(bool x, bool y) const { return x != y; }
};

// Binary ops whose inputs share one dtype; the output dtype is what the functor returns.
template <typename Op, Domain D>
void binary_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                   std::span<Tensor* const> outputs) {
  HalfAsFloat io(inputs, outputs);
  const Op op = make_op<Op>(ctx.node);
  const Tensor b = broadcast_operand_b(ctx.node, io.in(0), io.in(1));
  dispatch_domain<D>(io.in(0).dtype(), ctx.node, [&](auto tag) {
    using T = decltype(tag);
    binary_map<T, T, decltype(op(T{}, T{}))>(ctx, io.in(0), b, io.out(0), op);
  });
  io.finish();
}

// Max, Min, Sum (Op = Add) and Mean (Add, then a division): folds the inputs left to right into
// the output, which is reused as the left operand.
template <typename Op, bool kAverage>
void variadic_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                     std::span<Tensor* const> outputs) {
  HalfAsFloat io(inputs, outputs);
  Tensor& out = io.out(0);
  const Op op;
  dispatch_numeric(io.in(0).dtype(), ctx.node, [&](auto tag) {
    using T = decltype(tag);
    if (io.num_inputs() == 1) {
      unary_map<T, T>(ctx, io.in(0), out, [](T x) { return x; });
    } else {
      binary_map<T, T, T>(ctx, io.in(0), io.in(1), out, op);
      for (size_t k = 2; k < io.num_inputs(); ++k) binary_map<T, T, T>(ctx, out, io.in(k), out, op);
    }
    if constexpr (kAverage) {
      const T count = static_cast<T>(io.num_inputs());
      unary_map<T, T>(ctx, out, out, [count](T x) { return static_cast<T>(x / count); });
    }
  });
  io.finish();
}

// Integer base with a whole non-negative exponent: exact (wrapping) repeated squaring, like
// numpy's integer power. Everything else goes through double pow.
template <typename T>
T power(T base, double exponent) {
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(std::pow(static_cast<double>(base), exponent));
  } else {
    if (exponent >= 0 && exponent < 64 && exponent == std::floor(exponent)) {
      using U = std::make_unsigned_t<T>;
      U result = 1, b = static_cast<U>(base);
      for (auto e = static_cast<uint64_t>(exponent); e; e >>= 1) {
        if (e & 1) result = static_cast<U>(result * b);
        b = static_cast<U>(b * b);
      }
      return static_cast<T>(result);
    }
    return truncate_to<T>(std::pow(static_cast<double>(base), exponent));
  }
}

// Pow: the exponent may have another dtype than the base; it is read as double.
void pow_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                std::span<Tensor* const> outputs) {
  HalfAsFloat io(inputs, outputs);
  const Tensor exp_in = broadcast_operand_b(ctx.node, io.in(0), io.in(1));
  Tensor exponent(DataType::kFloat64, exp_in.shape());
  dispatch_numeric(exp_in.dtype(), ctx.node, [&](auto tag) {
    using E = decltype(tag);
    unary_map<E, double>(ctx, exp_in, exponent, [](E e) { return static_cast<double>(e); });
  });
  dispatch_numeric(io.in(0).dtype(), ctx.node, [&](auto tag) {
    using T = decltype(tag);
    binary_map<T, double, T>(ctx, io.in(0), exponent, io.out(0),
                             [](T x, double y) { return power(x, y); });
  });
  io.finish();
}

void where_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                  std::span<Tensor* const> outputs) {
  const Tensor& cond = *inputs[0];
  TANDEM_CHECK(cond.dtype() == DataType::kBool, ErrorCode::kInvalidModel,
               "{}: condition must be bool, got {}", ctx.node.describe(), dtype_name(cond.dtype()));
  const Tensor& x = *inputs[1];
  const Tensor& y = *inputs[2];
  Tensor& out = *outputs[0];
  const bool sized = visit_element_bits(
      dtype_size(x.dtype()), [&](auto bits) { where_map<decltype(bits)>(ctx, cond, x, y, out); });
  if (!sized)
    raise(ErrorCode::kUnsupported, "{}: dtype {} is not supported", ctx.node.describe(),
          dtype_name(x.dtype()));
}

}  // namespace

void register_elementwise_ref_kernels(KernelRegistry& r) {
  r.add("Abs", &unary_kernel<Abs, Domain::kNumeric>);
  r.add("Neg", &unary_kernel<Neg, Domain::kNumeric>);
  r.add("Sign", &unary_kernel<Sign, Domain::kNumeric>);
  r.add("Exp", &unary_kernel<Exp, Domain::kFloat>);
  r.add("Log", &unary_kernel<Log, Domain::kFloat>);
  r.add("Sqrt", &unary_kernel<Sqrt, Domain::kFloat>);
  r.add("Reciprocal", &unary_kernel<Reciprocal, Domain::kFloat>);
  r.add("Floor", &unary_kernel<Floor, Domain::kFloat>);
  r.add("Ceil", &unary_kernel<Ceil, Domain::kFloat>);
  r.add("Round", &unary_kernel<Round, Domain::kFloat>);
  r.add("Sin", &unary_kernel<Sin, Domain::kFloat>);
  r.add("Cos", &unary_kernel<Cos, Domain::kFloat>);
  r.add("Tan", &unary_kernel<Tan, Domain::kFloat>);
  r.add("Asin", &unary_kernel<Asin, Domain::kFloat>);
  r.add("Acos", &unary_kernel<Acos, Domain::kFloat>);
  r.add("Atan", &unary_kernel<Atan, Domain::kFloat>);
  r.add("Sinh", &unary_kernel<Sinh, Domain::kFloat>);
  r.add("Cosh", &unary_kernel<Cosh, Domain::kFloat>);
  r.add("Asinh", &unary_kernel<Asinh, Domain::kFloat>);
  r.add("Acosh", &unary_kernel<Acosh, Domain::kFloat>);
  r.add("Atanh", &unary_kernel<Atanh, Domain::kFloat>);
  r.add("Erf", &unary_kernel<Erf, Domain::kFloat>);
  r.add("IsNaN", &unary_kernel<IsNaN, Domain::kFloat>);
  r.add("IsInf", &unary_kernel<IsInf, Domain::kFloat>);
  r.add("Not", &unary_kernel<Not, Domain::kBool>);

  r.add("Add", &binary_kernel<Add, Domain::kNumeric>);
  r.add("Sub", &binary_kernel<Sub, Domain::kNumeric>);
  r.add("Mul", &binary_kernel<Mul, Domain::kNumeric>);
  r.add("Div", &binary_kernel<Div, Domain::kNumeric>);
  r.add("Mod", &binary_kernel<Mod, Domain::kNumeric>);
  r.add("BitShift", &binary_kernel<BitShift, Domain::kUnsigned>);
  r.add("Pow", &pow_kernel);
  r.add("Equal", &binary_kernel<Equal, Domain::kNumericOrBool>);
  r.add("Less", &binary_kernel<Less, Domain::kNumeric>);
  r.add("Greater", &binary_kernel<Greater, Domain::kNumeric>);
  r.add("LessOrEqual", &binary_kernel<LessOrEqual, Domain::kNumeric>);
  r.add("GreaterOrEqual", &binary_kernel<GreaterOrEqual, Domain::kNumeric>);
  r.add("And", &binary_kernel<And, Domain::kBool>);
  r.add("Or", &binary_kernel<Or, Domain::kBool>);
  r.add("Xor", &binary_kernel<Xor, Domain::kBool>);

  r.add("Max", &variadic_kernel<Max, false>);
  r.add("Min", &variadic_kernel<Min, false>);
  r.add("Sum", &variadic_kernel<Add, false>);
  r.add("Mean", &variadic_kernel<Add, true>);
  r.add("Where", &where_kernel);
}

}  // namespace tandem

// Reference kernels of the activation family. Each activation is a functor apply(x, params) on
// the compute type C; one kernel template maps it over the tensor. Storage and compute types
// differ only for float16/bfloat16, which are computed in float (the Repr traits below).
#include "ops/activation.h"

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/op_chain.h"
#include "core/dtype_visit.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/legacy.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {
namespace {

// Tag types standing for the 16-bit float storage formats.
struct Float16Bits {
  uint16_t bits;
};
struct BFloat16Bits {
  uint16_t bits;
};

// Repr<S>: the compute type of storage type S and the conversions between them.
template <typename S>
struct Repr {
  using C = S;
  static C load(S s) { return s; }
  static S store(C c) { return c; }
};
template <>
struct Repr<Float16Bits> {
  using C = float;
  static C load(Float16Bits s) { return half_to_float(s.bits); }
  static Float16Bits store(C c) { return {float_to_half(c)}; }
};
template <>
struct Repr<BFloat16Bits> {
  using C = float;
  static C load(BFloat16Bits s) { return bfloat16_to_float(s.bits); }
  static BFloat16Bits store(C c) { return {float_to_bfloat16(c)}; }
};

// Calls f(S{}) with the storage type of `dtype`; integers only when the op allows them.
template <bool kIntegers, typename F>
void dispatch_activation(DataType dtype, const Node& node, F&& f) {
  switch (dtype) {
    case DataType::kFloat32:
      f(float{});
      return;
    case DataType::kFloat64:
      f(double{});
      return;
    case DataType::kFloat16:
      f(Float16Bits{});
      return;
    case DataType::kBFloat16:
      f(BFloat16Bits{});
      return;
    default:
      break;
  }
  if constexpr (kIntegers) {
    if (visit_dtype<IsInteger>(dtype, f)) return;
  }
  raise(ErrorCode::kUnsupported, "{}: dtype {} is not supported ({})", node.describe(),
        dtype_name(dtype), kIntegers ? "numeric types only" : "floating-point types only");
}

// Large loops are split over the session's threads; small ones stay inline.
constexpr int64_t kMinParallelElements = 1 << 15;

template <typename Body>
void for_range(const KernelContext& ctx, int64_t n, const Body& body) {
  if (n >= kMinParallelElements && ctx.pool.size() > 1) {
    ctx.pool.parallel_for(n, body);
  } else if (n > 0) {
    body(0, n);
  }
}

// The attributes an activation may have (ops/activation.h), read once when the kernel is created.
using Params = ActivationAttrs;

// ---- Activation functors: C apply(C x, params), kIntegers.

struct Relu {
  static constexpr bool kIntegers = true;
  template <typename C>
  static C apply(C x, const Params&) {
    return x > C(0) ? x : C(0);
  }
};
struct LeakyRelu {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params& p) {
    return x < 0 ? C(p.alpha) * x : x;
  }
};
struct ThresholdedRelu {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params& p) {
    return x > C(p.alpha) ? x : C(0);
  }
};
struct Sigmoid {
  static constexpr bool kIntegers = false;
  // Written so that exp never overflows.
  template <typename C>
  static C apply(C x, const Params&) {
    if (x >= 0) return C(1) / (C(1) + std::exp(-x));
    const C e = std::exp(x);
    return e / (C(1) + e);
  }
};
struct HardSigmoid {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params& p) {
    return std::max(C(0), std::min(C(1), C(p.alpha) * x + C(p.beta)));
  }
};
struct HardSwish {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params&) {
    return x * std::max(C(0), std::min(C(1), x / C(6) + C(0.5)));
  }
};
struct Tanh {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params&) {
    return std::tanh(x);
  }
};
struct Elu {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params& p) {
    return x < 0 ? C(p.alpha) * std::expm1(x) : x;
  }
};
struct Selu {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params& p) {
    return C(p.gamma) * (x <= 0 ? C(p.alpha) * std::expm1(x) : x);
  }
};
struct Celu {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params& p) {
    const C a = C(p.alpha);
    return std::max(C(0), x) + std::min(C(0), a * std::expm1(x / a));
  }
};
// log(1 + e^x), written so that exp never overflows.
template <typename C>
C softplus(C x) {
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}
struct Softplus {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params&) {
    return softplus(x);
  }
};
struct Softsign {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params&) {
    return x / (C(1) + std::abs(x));
  }
};
struct Mish {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params&) {
    return x * std::tanh(softplus(x));
  }
};
struct Gelu {
  static constexpr bool kIntegers = false;
  template <typename C>
  static C apply(C x, const Params& p) {
    if (p.tanh_approximation) {
      const C k = C(0.7978845608028654);  // sqrt(2 / pi)
      return C(0.5) * x * (C(1) + std::tanh(k * (x + C(0.044715) * x * x * x)));
    }
    return C(0.5) * x * (C(1) + std::erf(x * C(0.7071067811865476)));  // x / sqrt(2)
  }
};
struct Shrink {
  static constexpr bool kIntegers = true;
  // Compared in double so that integer inputs see the float thresholds exactly.
  template <typename C>
  static C apply(C x, const Params& p) {
    const double v = static_cast<double>(x);
    if (v < -p.alpha) return static_cast<C>(v + p.beta);
    if (v > p.alpha) return static_cast<C>(v - p.beta);
    return C(0);
  }
};

template <typename Op>
class ActivationKernel final : public Kernel {
 public:
  explicit ActivationKernel(const Node& node) : params_(ActivationAttrs::parse(node)) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor& x = *inputs[0];
    Tensor& y = *outputs[0];
    dispatch_activation<Op::kIntegers>(x.dtype(), ctx.node, [&](auto tag) {
      using S = decltype(tag);
      using R = Repr<S>;
      const S* in = x.data<S>();
      S* out = y.data<S>();
      for_range(ctx, x.numel(), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) out[i] = R::store(Op::apply(R::load(in[i]), params_));
      });
    });
  }

 private:
  Params params_;
};

template <typename Op>
KernelFactory activation_factory() {
  return [](const Node& node) -> std::unique_ptr<Kernel> {
    return std::make_unique<ActivationKernel<Op>>(node);
  };
}

// Reads element 0 of a bound tensor (Clip's min/max) in the compute type.
template <typename S>
typename Repr<S>::C read_bound(const Tensor& t, DataType expected, const Node& node) {
  TANDEM_CHECK(t.dtype() == expected && t.numel() == 1, ErrorCode::kInvalidModel,
               "{}: min/max must be a single {} value, got {} {}", node.describe(),
               dtype_name(expected), dtype_name(t.dtype()), shape_str(t.shape()));
  return Repr<S>::load(t.data<S>()[0]);
}

// Clip: bounds are attributes before opset 11, optional inputs 1 and 2 from 11 on. A missing
// bound is the type's extreme. min > max gives max everywhere (the spec's rule).
class ClipKernel final : public Kernel {
 public:
  explicit ClipKernel(const Node& node) : attrs_(ActivationAttrs::parse(node)) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor& x = *inputs[0];
    Tensor& y = *outputs[0];
    dispatch_activation<true>(x.dtype(), ctx.node, [&](auto tag) {
      using S = decltype(tag);
      using R = Repr<S>;
      using C = typename R::C;
      // Unbounded: +-inf for floats (so infinities pass through), the extremes for integers.
      C lo = std::numeric_limits<C>::lowest(), hi = std::numeric_limits<C>::max();
      if constexpr (std::is_floating_point_v<C>) {
        lo = -std::numeric_limits<C>::infinity();
        hi = std::numeric_limits<C>::infinity();
      }
      if (attrs_.clip_bounds_are_attributes) {
        if constexpr (std::is_floating_point_v<C>) {
          lo = static_cast<C>(attrs_.clip_min);
          hi = static_cast<C>(attrs_.clip_max);
        } else {
          raise(ErrorCode::kUnsupported,
                "{}: before opset 11 Clip takes floating-point inputs, got {}", ctx.node.describe(),
                dtype_name(x.dtype()));
        }
      } else {
        if (inputs.size() > 1 && inputs[1]) lo = read_bound<S>(*inputs[1], x.dtype(), ctx.node);
        if (inputs.size() > 2 && inputs[2]) hi = read_bound<S>(*inputs[2], x.dtype(), ctx.node);
      }
      const S* in = x.data<S>();
      S* out = y.data<S>();
      for_range(ctx, x.numel(), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const C v = R::load(in[i]);
          out[i] = R::store(std::min(std::max(v, lo), hi));  // NaN passes through
        }
      });
    });
  }

 private:
  ActivationAttrs attrs_;
};

// PRelu: y = x < 0 ? slope * x : x, with slope broadcast to x's shape (unidirectionally).
void prelu_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                  std::span<Tensor* const> outputs) {
  const Tensor& x = *inputs[0];
  const Tensor& slope = *inputs[1];
  Tensor& y = *outputs[0];
  TANDEM_CHECK(slope.dtype() == x.dtype(), ErrorCode::kInvalidModel,
               "{}: slope has dtype {} but X has {}", ctx.node.describe(),
               dtype_name(slope.dtype()), dtype_name(x.dtype()));
  // Index into slope for every element of x: its broadcast strides applied to x's index. Before
  // opset 7 a 1-D slope of X.shape[1] values is per channel: viewed as [C, 1, ..., 1].
  const Shape slope_shape = legacy_prelu_slope_shape(ctx.node, x.shape(), slope.shape());
  const std::vector<int64_t> slope_strides = broadcast_strides(slope_shape, x.shape());
  const Shape& dims = x.shape();
  dispatch_activation<true>(x.dtype(), ctx.node, [&](auto tag) {
    using S = decltype(tag);
    using R = Repr<S>;
    using C = typename R::C;
    const S* in = x.data<S>();
    const S* a = slope.data<S>();
    S* out = y.data<S>();
    for_range(ctx, x.numel(), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        int64_t offset = 0;
        if (slope.numel() == x.numel()) {
          offset = i;
        } else if (slope.numel() > 1) {
          int64_t rest = i;
          for (size_t d = dims.size(); d-- > 0;) {
            offset += rest % dims[d] * slope_strides[d];
            rest /= dims[d];
          }
        }
        const C v = R::load(in[i]);
        out[i] = v < C(0) ? R::store(R::load(a[offset]) * v) : in[i];
      }
    });
  });
}

// GeGLU (com.tandem; definition in ops/activation.cc): Slice, Slice, Gelu, Mul on their reference
// kernels. The slice bounds depend on the last dim, so there is one chain per last dim seen.
class GeGLURefKernel : public Kernel {
 public:
  explicit GeGLURefKernel(const Node& node) : node_(node), attrs_(ActivationAttrs::parse(node)) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    chains_.get(inputs[0]->shape().back(), [&](int64_t d) { return build(d); })
        .run(ctx, inputs, *outputs[0]);
  }

 private:
  std::unique_ptr<OpChain> build(int64_t d) const {
    auto c = std::make_unique<OpChain>(node_);
    auto ints = [&](int64_t v) {
      return c->constant(Tensor::from_vector(DataType::kInt64, {1}, std::vector<int64_t>{v}));
    };
    const int64_t half = (d + 1) / 2;
    Value* x = c->input(0);
    Value* a = c->add("Slice", {x, ints(0), ints(half), ints(-1)});
    Value* g = c->add("Slice", {x, ints(half), ints(2 * half), ints(-1)});
    Attribute approx;
    approx.kind = Attribute::Kind::kString;
    approx.s = attrs_.tanh_approximation ? "tanh" : "none";
    Value* gelu = c->add("Gelu", {g}, {{"approximate", approx}}, 20);
    c->add("Mul", {a, gelu});
    return c;
  }

  const Node& node_;
  ActivationAttrs attrs_;
  OpChainCache<int64_t> chains_;
};

}  // namespace

void register_activation_ref_kernels(KernelRegistry& r) {
  r.add("Relu", activation_factory<Relu>());
  r.add("LeakyRelu", activation_factory<LeakyRelu>());
  r.add("ThresholdedRelu", activation_factory<ThresholdedRelu>());
  r.add("Sigmoid", activation_factory<Sigmoid>());
  r.add("HardSigmoid", activation_factory<HardSigmoid>());
  r.add("HardSwish", activation_factory<HardSwish>());
  r.add("Tanh", activation_factory<Tanh>());
  r.add("Elu", activation_factory<Elu>());
  r.add("Selu", activation_factory<Selu>());
  r.add("Celu", activation_factory<Celu>());
  r.add("Softplus", activation_factory<Softplus>());
  r.add("Softsign", activation_factory<Softsign>());
  r.add("Mish", activation_factory<Mish>());
  r.add("Gelu", activation_factory<Gelu>());
  // The fused Gelu (com.tandem) fuse_gelu.cc makes: the same op.
  r.add("Gelu", activation_factory<Gelu>(), kFusedDomain);
  r.add(
      "GeGLU",
      [](const Node& node) -> std::unique_ptr<Kernel> {
        return std::make_unique<GeGLURefKernel>(node);
      },
      kFusedDomain);
  r.add("Shrink", activation_factory<Shrink>());
  r.add("Clip", [](const Node& node) -> std::unique_ptr<Kernel> {
    return std::make_unique<ClipKernel>(node);
  });
  r.add("PRelu", &prelu_kernel);
}

}  // namespace tandem

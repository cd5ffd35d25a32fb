// Reference kernels of the cast family: Cast and CastLike (both take the target dtype from the
// output tensor the executor allocated). float16/bfloat16 go through float32: a 16-bit source is
// decoded to float32 first, a 16-bit target is produced in float32 and then encoded.
#include <cmath>
#include <limits>
#include <span>
#include <type_traits>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "core/error.h"
#include "core/half.h"

namespace tandem {
namespace {

constexpr int64_t kCastParallelMin = 1 << 15;

// Splits [0, n) over the pool when the tensor is big enough to be worth it.
template <typename Body>
void split_work(const KernelContext& ctx, int64_t n, const Body& body) {
  if (n < kCastParallelMin || ctx.pool.size() == 1) {
    if (n > 0) body(0, n);
    return;
  }
  ctx.pool.parallel_for(n, body);
}

// One element S -> D. Float -> integer truncates toward zero; NaN gives 0 and values outside
// D's range saturate (the bare conversion would be undefined behaviour). Anything -> bool is
// "!= 0" (so NaN -> true).
template <typename D, typename S>
D convert(S v) {
  if constexpr (std::is_same_v<D, bool>) {
    return v != S(0);
  } else if constexpr (std::is_integral_v<D> && std::is_floating_point_v<S>) {
    if (std::isnan(v)) return D(0);
    if (v <= static_cast<S>(std::numeric_limits<D>::lowest()))
      return std::numeric_limits<D>::lowest();
    if (v >= static_cast<S>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
    return static_cast<D>(v);
  } else {
    return static_cast<D>(v);  // integer narrowing wraps (C++20), float narrowing rounds
  }
}

// The numeric types plus bool.
template <typename F>
void dispatch_plain(DataType dtype, const Node& node, F&& f) {
  if (dtype == DataType::kBool) {
    f(bool{});
  } else {
    dispatch_numeric(dtype, node, f);
  }
}

bool is_16bit(DataType d) {
  return d == DataType::kFloat16 || d == DataType::kBFloat16;
}

// Casts between the plain (non-16-bit-float) dtypes.
void cast_plain(const KernelContext& ctx, const Tensor& in, Tensor& out) {
  dispatch_plain(in.dtype(), ctx.node, [&](auto src_tag) {
    using S = decltype(src_tag);
    dispatch_plain(out.dtype(), ctx.node, [&](auto dst_tag) {
      using D = decltype(dst_tag);
      const S* src = in.data<S>();
      D* dst = out.data<D>();
      split_work(ctx, in.numel(), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) dst[i] = convert<D>(src[i]);
      });
    });
  });
}

void cast_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                 std::span<Tensor* const> outputs) {
  const Tensor& in = *inputs[0];
  Tensor& out = *outputs[0];
  TANDEM_CHECK(in.dtype() != DataType::kString && out.dtype() != DataType::kString,
               ErrorCode::kUnsupported, "{}: casting from/to string is not supported",
               ctx.node.describe());

  // Source: decode float16/bfloat16 into a float32 copy.
  Tensor source = in;
  if (is_16bit(in.dtype())) {
    source = Tensor(DataType::kFloat32, in.shape());
    const uint16_t* bits = in.data<uint16_t>();
    float* f = source.data<float>();
    const bool bf = in.dtype() == DataType::kBFloat16;
    for (int64_t i = 0; i < in.numel(); ++i)
      f[i] = bf ? bfloat16_to_float(bits[i]) : half_to_float(bits[i]);
  }
  if (!is_16bit(out.dtype())) {
    cast_plain(ctx, source, out);
    return;
  }
  // Target: produce float32, then encode (a float32 source is encoded directly).
  Tensor wide = source;
  if (source.dtype() != DataType::kFloat32) {
    wide = Tensor(DataType::kFloat32, in.shape());
    cast_plain(ctx, source, wide);
  }
  const float* f = wide.data<float>();
  uint16_t* bits = out.data<uint16_t>();
  const bool bf = out.dtype() == DataType::kBFloat16;
  for (int64_t i = 0; i < out.numel(); ++i)
    bits[i] = bf ? float_to_bfloat16(f[i]) : float_to_half(f[i]);
}

}  // namespace

void register_cast_ref_kernels(KernelRegistry& r) {
  r.add("Cast", &cast_kernel);
  r.add("CastLike", &cast_kernel);
}

}  // namespace tandem

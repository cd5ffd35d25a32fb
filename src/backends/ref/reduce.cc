// Reference kernels of the reduce family: Reduce* and ArgMax/ArgMin.
//
// Reduce*: every output element is a fold over the input elements at one fixed position of the
// kept axes; `base` holds each output element's first input offset and `offsets` the offsets of
// all positions of the reduced axes relative to it.
#include "ops/reduce.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <type_traits>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

enum class Op { kMean, kSum, kMax, kMin, kProd, kL1, kL2, kLogSum, kLogSumExp, kSumSquare };

// Offsets (in elements) of every index of the axes `which` of a tensor with `shape`, in
// row-major order of those axes.
std::vector<int64_t> axis_offsets(const Shape& shape, const std::vector<int64_t>& which) {
  std::vector<int64_t> strides = contiguous_strides(shape);
  std::vector<int64_t> offs{0};
  for (int64_t a : which) {
    std::vector<int64_t> next;
    next.reserve(offs.size() * static_cast<size_t>(shape[a]));
    for (int64_t o : offs)
      for (int64_t i = 0; i < shape[a]; ++i) next.push_back(o + i * strides[a]);
    offs.swap(next);
  }
  return offs;
}

template <typename T>
void reduce_typed(const KernelContext& ctx, Op op, const T* x, T* y,
                  const std::vector<int64_t>& base, const std::vector<int64_t>& offsets) {
  // Floating sums accumulate in double; integers in their own type (wrapping like numpy).
  using A = std::conditional_t<std::is_floating_point_v<T>, double, T>;
  const int64_t count = static_cast<int64_t>(offsets.size());
  ctx.pool.parallel_for(static_cast<int64_t>(base.size()), [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const T* p = x + base[o];
      A acc{};
      switch (op) {
        case Op::kMax: {
          acc = std::numeric_limits<T>::has_infinity ? -std::numeric_limits<A>::infinity()
                                                     : std::numeric_limits<T>::lowest();
          for (int64_t r = 0; r < count; ++r) acc = std::max<A>(acc, p[offsets[r]]);
          break;
        }
        case Op::kMin: {
          acc = std::numeric_limits<T>::has_infinity ? std::numeric_limits<A>::infinity()
                                                     : std::numeric_limits<T>::max();
          for (int64_t r = 0; r < count; ++r) acc = std::min<A>(acc, p[offsets[r]]);
          break;
        }
        case Op::kProd: {
          acc = A(1);
          for (int64_t r = 0; r < count; ++r) acc *= p[offsets[r]];
          break;
        }
        case Op::kL1: {
          for (int64_t r = 0; r < count; ++r) {
            A v = p[offsets[r]];
            acc += v < A(0) ? A(0) - v : v;
          }
          break;
        }
        case Op::kL2:
        case Op::kSumSquare: {
          for (int64_t r = 0; r < count; ++r) {
            A v = p[offsets[r]];
            acc += v * v;
          }
          if (op == Op::kL2) acc = static_cast<A>(std::sqrt(static_cast<double>(acc)));
          break;
        }
        case Op::kLogSumExp: {
          // log(sum(exp(x - max))) + max stays finite for large inputs.
          double mx = -std::numeric_limits<double>::infinity();
          for (int64_t r = 0; r < count; ++r) mx = std::max<double>(mx, p[offsets[r]]);
          double s = 0;
          for (int64_t r = 0; r < count; ++r)
            s += std::exp(static_cast<double>(p[offsets[r]]) - mx);
          double res = std::log(s) + mx;
          if (count == 0) res = -std::numeric_limits<double>::infinity();
          if (std::isinf(mx)) res = mx;  // all -inf (or a +inf): the sum is dominated by it
          acc = static_cast<A>(res);
          break;
        }
        case Op::kMean:
        case Op::kSum:
        case Op::kLogSum: {
          for (int64_t r = 0; r < count; ++r) acc += p[offsets[r]];
          if (op == Op::kMean) {
            if constexpr (std::is_floating_point_v<T>)
              acc = count ? acc / static_cast<A>(count) : std::numeric_limits<A>::quiet_NaN();
            else
              acc = count ? static_cast<A>(acc / static_cast<A>(count)) : A(0);
          }
          if (op == Op::kLogSum) acc = static_cast<A>(std::log(static_cast<double>(acc)));
          break;
        }
      }
      y[o] = static_cast<T>(acc);
    }
  });
}

template <Op kOp>
void reduce_kernel(const KernelContext& ctx, const ReduceAttrs& attrs,
                   std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const Shape& shape = x.shape();
  int64_t rank = static_cast<int64_t>(shape.size());
  const ReduceAttrs::Reduced r = attrs.reduced(rank, inputs.size() > 1 ? inputs[1] : nullptr, node);
  if (r.noop) {
    // noop_with_empty_axes: the output is the input.
    TANDEM_CHECK(y.nbytes() == x.nbytes(), ErrorCode::kInternal, "{}: output size mismatch",
                 node.describe());
    if (x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
    return;
  }
  const std::set<int64_t>& reduced_set = r.axes;
  std::vector<int64_t> kept, reduced;
  for (int64_t d = 0; d < rank; ++d) (reduced_set.count(d) ? reduced : kept).push_back(d);
  std::vector<int64_t> base = axis_offsets(shape, kept);
  std::vector<int64_t> offsets = axis_offsets(shape, reduced);
  TANDEM_CHECK(static_cast<int64_t>(base.size()) == y.numel(), ErrorCode::kInternal,
               "{}: output shape {} does not match input {}", node.describe(), shape_str(y.shape()),
               shape_str(shape));

  if (x.dtype() == DataType::kFloat16) {
    std::vector<float> xf(static_cast<size_t>(x.numel())), yf(base.size());
    for (size_t i = 0; i < xf.size(); ++i) xf[i] = half_to_float(x.data<uint16_t>()[i]);
    reduce_typed<float>(ctx, kOp, xf.data(), yf.data(), base, offsets);
    for (size_t i = 0; i < yf.size(); ++i) y.data<uint16_t>()[i] = float_to_half(yf[i]);
    return;
  }
  dispatch_numeric(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    reduce_typed<T>(ctx, kOp, x.data<T>(), y.data<T>(), base, offsets);
  });
}

template <bool kMax>
void arg_kernel(const KernelContext& ctx, const ReduceAttrs& attrs,
                std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  int64_t rank = static_cast<int64_t>(x.rank());
  int64_t axis = normalize_axis(attrs.axis, rank, node);
  bool last = attrs.select_last_index;
  int64_t outer = 1, n = x.dim(static_cast<size_t>(axis)), inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.dim(static_cast<size_t>(d));
  for (int64_t d = axis + 1; d < rank; ++d) inner *= x.dim(static_cast<size_t>(d));
  TANDEM_CHECK(n > 0, ErrorCode::kInvalidArgument, "{}: axis {} of {} is empty", node.describe(),
               axis, shape_str(x.shape()));
  int64_t* out = y.data<int64_t>();
  auto run = [&](auto get) {
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t in = 0; in < inner; ++in) {
        int64_t best = 0;
        auto bv = get(o * n * inner + in);
        for (int64_t i = 1; i < n; ++i) {
          auto v = get((o * n + i) * inner + in);
          bool better = kMax ? (v > bv || (last && v == bv)) : (v < bv || (last && v == bv));
          if (better) {
            best = i;
            bv = v;
          }
        }
        out[o * inner + in] = best;
      }
    }
  };
  if (x.dtype() == DataType::kFloat16) {
    const uint16_t* p = x.data<uint16_t>();
    run([&](int64_t i) { return half_to_float(p[i]); });
    return;
  }
  dispatch_numeric(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* p = x.data<T>();
    run([&](int64_t i) { return p[i]; });
  });
}

}  // namespace

void register_reduce_ref_kernels(KernelRegistry& r) {
  r.add("ReduceMean", reduce_kernel<Op::kMean>);
  r.add("ReduceSum", reduce_kernel<Op::kSum>);
  r.add("ReduceMax", reduce_kernel<Op::kMax>);
  r.add("ReduceMin", reduce_kernel<Op::kMin>);
  r.add("ReduceProd", reduce_kernel<Op::kProd>);
  r.add("ReduceL1", reduce_kernel<Op::kL1>);
  r.add("ReduceL2", reduce_kernel<Op::kL2>);
  r.add("ReduceLogSum", reduce_kernel<Op::kLogSum>);
  r.add("ReduceLogSumExp", reduce_kernel<Op::kLogSumExp>);
  r.add("ReduceSumSquare", reduce_kernel<Op::kSumSquare>);
  r.add("ArgMax", arg_kernel<true>);
  r.add("ArgMin", arg_kernel<false>);
}

}  // namespace tandem

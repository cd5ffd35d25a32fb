// Reference kernels of the selection family: Compress, Unique, ReverseSequence, Det.
#include "ops/selection.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/value_io.h"
#include "core/error.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

// [outer, n, inner] view of a tensor around `axis` (the flattened tensor when axis < 0).
struct AxisView {
  int64_t outer = 1, n = 1, inner = 1;
};

AxisView axis_view(const Shape& s, int64_t axis) {
  AxisView v;
  if (axis < 0) {
    v.n = shape_numel(s);
    return v;
  }
  v.n = s[static_cast<size_t>(axis)];
  for (int64_t d = 0; d < axis; ++d) v.outer *= s[static_cast<size_t>(d)];
  for (size_t d = static_cast<size_t>(axis) + 1; d < s.size(); ++d) v.inner *= s[d];
  return v;
}

// The normalised axis, or -1 (the flattened input) when none was given.
int64_t axis_or_flat(const SelectionAttrs& attrs, const Tensor& x, const Node& node) {
  return attrs.axis ? normalize_axis(*attrs.axis, static_cast<int64_t>(x.rank()), node) : -1;
}

void compress_kernel(const KernelContext& ctx, const SelectionAttrs& attrs,
                     std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const Tensor& cond = *inputs[1];
  const int64_t axis = axis_or_flat(attrs, x, node);
  AxisView v = axis_view(x.shape(), axis);
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < std::min(cond.numel(), v.n); ++i)
    if (cond.data<bool>()[i]) kept.push_back(i);
  const int64_t k = static_cast<int64_t>(kept.size());
  const size_t es = dtype_size(x.dtype());
  TANDEM_CHECK(outputs[0]->numel() == v.outer * k * v.inner, ErrorCode::kInternal,
               "{}: output shape {} does not match the condition", node.describe(),
               shape_str(outputs[0]->shape()));
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(outputs[0]->raw());
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t j = 0; j < k; ++j)
      std::memcpy(
          dst + static_cast<size_t>((o * k + j) * v.inner) * es,
          src + static_cast<size_t>((o * v.n + kept[static_cast<size_t>(j)]) * v.inner) * es,
          static_cast<size_t>(v.inner) * es);
}

// Unique: distinct slices along the axis (elements when there is none), sorted ascending
// (lexicographically for slices) or in order of first occurrence when sorted = 0.
template <typename T>
void unique_typed(const Node& node, const Tensor& x, int64_t axis, bool sorted,
                  std::span<Tensor* const> out) {
  AxisView v = axis_view(x.shape(), axis);
  const T* p = x.data<T>();
  std::vector<std::vector<T>> slices(static_cast<size_t>(v.n));
  for (int64_t i = 0; i < v.n; ++i)
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t in = 0; in < v.inner; ++in)
        slices[static_cast<size_t>(i)].push_back(p[(o * v.n + i) * v.inner + in]);
  std::map<std::vector<T>, int64_t> first;  // slice -> index of its first occurrence
  std::vector<int64_t> order;
  for (int64_t i = 0; i < v.n; ++i)
    if (first.emplace(slices[static_cast<size_t>(i)], i).second) order.push_back(i);
  if (sorted) {
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return slices[static_cast<size_t>(a)] < slices[static_cast<size_t>(b)];
    });
  }
  const int64_t u = static_cast<int64_t>(order.size());
  TANDEM_CHECK(out[0]->numel() == v.outer * u * v.inner, ErrorCode::kInternal,
               "{}: found {} unique values, but the output was sized {}", node.describe(), u,
               shape_str(out[0]->shape()));
  std::map<std::vector<T>, int64_t> position;
  for (int64_t j = 0; j < u; ++j)
    position[slices[static_cast<size_t>(order[static_cast<size_t>(j)])]] = j;
  T* y = out[0]->data<T>();
  for (int64_t j = 0; j < u; ++j) {
    const std::vector<T>& s = slices[static_cast<size_t>(order[static_cast<size_t>(j)])];
    for (int64_t o = 0; o < v.outer; ++o)
      for (int64_t in = 0; in < v.inner; ++in)
        y[(o * u + j) * v.inner + in] = s[static_cast<size_t>(o * v.inner + in)];
  }
  if (out.size() > 1 && out[1])
    for (int64_t j = 0; j < u; ++j) out[1]->data<int64_t>()[j] = order[static_cast<size_t>(j)];
  std::vector<int64_t> counts(static_cast<size_t>(u), 0);
  for (int64_t i = 0; i < v.n; ++i) {
    int64_t j = position[slices[static_cast<size_t>(i)]];
    ++counts[static_cast<size_t>(j)];
    if (out.size() > 2 && out[2]) out[2]->data<int64_t>()[i] = j;
  }
  if (out.size() > 3 && out[3]) std::copy(counts.begin(), counts.end(), out[3]->data<int64_t>());
}

void unique_kernel(const KernelContext& ctx, const SelectionAttrs& attrs,
                   std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const int64_t axis = axis_or_flat(attrs, x, node);
  dispatch_numeric(x.dtype(), node, [&](auto tag) {
    unique_typed<decltype(tag)>(node, x, axis, attrs.sorted, outputs);
  });
}

// Row b's first len[b] time steps are reversed; the rest are copied.
void reverse_sequence_kernel(const KernelContext& ctx, const SelectionAttrs& attrs,
                             std::span<const Tensor* const> inputs,
                             std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const int64_t rank = static_cast<int64_t>(x.rank());
  const int64_t time_axis = normalize_axis(attrs.time_axis, rank, node);
  const int64_t batch_axis = 1 - time_axis;
  const int64_t steps = x.dim(static_cast<size_t>(time_axis));
  const int64_t batch = x.dim(static_cast<size_t>(batch_axis));
  const int64_t inner = x.numel() / std::max<int64_t>(1, steps * batch);
  std::vector<int64_t> lens = tensor_to_int64s(*inputs[1], node);
  const size_t es = dtype_size(x.dtype());
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(outputs[0]->raw());
  auto offset = [&](int64_t t, int64_t b) {
    return static_cast<size_t>((time_axis == 0 ? t * batch + b : b * steps + t) * inner) * es;
  };
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = lens[static_cast<size_t>(b)];
    TANDEM_CHECK(len >= 0 && len <= steps, ErrorCode::kInvalidArgument,
                 "{}: sequence length {} of batch {} is outside [0, {}]", node.describe(), len, b,
                 steps);
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t from = t < len ? len - 1 - t : t;
      std::memcpy(dst + offset(t, b), src + offset(from, b), static_cast<size_t>(inner) * es);
    }
  }
}

// Determinant by LU decomposition with partial pivoting, in double.
void det_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const int64_t n = x.dim(x.rank() - 1);
  const int64_t count = outputs[0]->numel();
  std::vector<double> v = read_doubles(x, node), dets(static_cast<size_t>(count));
  for (int64_t m = 0; m < count; ++m) {
    double* a = v.data() + m * n * n;
    double det = 1;
    for (int64_t c = 0; c < n && det != 0; ++c) {
      int64_t piv = c;
      for (int64_t r = c + 1; r < n; ++r)
        if (std::abs(a[r * n + c]) > std::abs(a[piv * n + c])) piv = r;
      if (a[piv * n + c] == 0) {
        det = 0;
        break;
      }
      if (piv != c) {
        for (int64_t k = 0; k < n; ++k) std::swap(a[c * n + k], a[piv * n + k]);
        det = -det;
      }
      det *= a[c * n + c];
      for (int64_t r = c + 1; r < n; ++r) {
        double f = a[r * n + c] / a[c * n + c];
        for (int64_t k = c; k < n; ++k) a[r * n + k] -= f * a[c * n + k];
      }
    }
    dets[static_cast<size_t>(m)] = det;
  }
  write_doubles(*outputs[0], dets, node);
}

}  // namespace

void register_selection_ref_kernels(KernelRegistry& r) {
  r.add("Compress", compress_kernel);
  r.add("Unique", unique_kernel);
  r.add("ReverseSequence", reverse_sequence_kernel);
  r.add("Det", det_kernel);
}

}  // namespace tandem

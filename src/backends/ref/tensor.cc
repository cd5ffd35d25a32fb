// Reference kernels of the tensor family. Pure data movement (Transpose, Concat, Split, Slice,
// Gather*, Tile, Pad, DepthToSpace, SpaceToDepth, Trilu, ...) copies elements as dtype_size
// bytes, so it works for every dtype (bool, float16 included); arithmetic ones (CumSum, TopK,
// Einsum, Scatter* reductions) dispatch on the numeric types.
#include "ops/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "backends/ref/strided_copy.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/einsum.h"
#include "ops/shape_utils.h"
#include "ops/slice.h"

namespace tandem {

namespace {

using Inputs = std::span<const Tensor* const>;
using Outputs = std::span<Tensor* const>;

int64_t esize_of(const Tensor& t) {
  return static_cast<int64_t>(dtype_size(t.dtype()));
}
uint8_t* bytes(Tensor& t) {
  return static_cast<uint8_t*>(t.raw());
}
const uint8_t* bytes(const Tensor& t) {
  return static_cast<const uint8_t*>(t.raw());
}

int64_t product(const Shape& s, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < s.size(); ++i) p *= s[i];
  return p;
}

// Maps index i into [0, dim) (negative counts from the end); an error when out of range, so no
// kernel ever reads or writes outside its tensors.
int64_t checked_index(int64_t i, int64_t dim, const Node& node, const char* what) {
  if (i < -dim || i >= dim)
    raise(ErrorCode::kInvalidArgument, "{}: {} {} is out of range for an axis of size {}",
          node.describe(), what, i, dim);
  return i < 0 ? i + dim : i;
}

// ---- Transpose, Concat, Split, Slice

void transpose_kernel(const KernelContext& ctx, const TransposeAttrs& attrs, Inputs inputs,
                      Outputs outputs) {
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const std::vector<int64_t> perm = attrs.perm_for(static_cast<int64_t>(x.rank()), ctx.node);
  std::vector<int64_t> in_strides = contiguous_strides(x.shape());
  std::vector<int64_t> strides;
  for (int64_t p : perm) strides.push_back(in_strides[static_cast<size_t>(p)]);
  strided_copy(ctx, bytes(y), bytes(x), y.shape(), strides, esize_of(x));
}

void concat_kernel(const KernelContext& ctx, const ConcatAttrs& attrs, Inputs inputs,
                   Outputs outputs) {
  Tensor& y = *outputs[0];
  size_t axis =
      static_cast<size_t>(normalize_axis(attrs.axis, static_cast<int64_t>(y.rank()), ctx.node));
  int64_t outer = product(y.shape(), 0, axis);
  int64_t inner = product(y.shape(), axis + 1, y.rank()) * esize_of(y);
  int64_t out_row = y.dim(axis) * inner;  // bytes per outer index in the output
  int64_t offset = 0;
  for (const Tensor* t : inputs) {
    int64_t chunk = t->dim(axis) * inner;
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(bytes(y) + o * out_row + offset, bytes(*t) + o * chunk,
                  static_cast<size_t>(chunk));
    offset += chunk;
  }
}

void split_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                  Outputs outputs) {
  const Tensor& x = *inputs[0];
  size_t axis =
      static_cast<size_t>(normalize_axis(attrs.axis, static_cast<int64_t>(x.rank()), ctx.node));
  int64_t outer = product(x.shape(), 0, axis);
  int64_t inner = product(x.shape(), axis + 1, x.rank()) * esize_of(x);
  int64_t in_row = x.dim(axis) * inner;
  int64_t offset = 0;
  for (Tensor* t : outputs) {
    if (!t) continue;
    int64_t chunk = t->dim(axis) * inner;
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(bytes(*t) + o * chunk, bytes(x) + o * in_row + offset,
                  static_cast<size_t>(chunk));
    offset += chunk;
  }
}

void slice_kernel(const KernelContext& ctx, Inputs inputs, Outputs outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  const Shape& shape = x.shape();
  int64_t rank = static_cast<int64_t>(shape.size());
  const auto [starts, ends, axes, steps] = read_slice_params(node, [&](size_t i) {
    return i < inputs.size() && inputs[i] ? tensor_to_int64s(*inputs[i], node)
                                          : std::vector<int64_t>{};
  });
  // The view: first element and stride of every axis.
  std::vector<int64_t> in_strides = contiguous_strides(shape), strides = in_strides;
  int64_t first = 0;
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t a = normalize_axis(axes[i], rank, node);
    int64_t dim = shape[a], step = steps[i], start = starts[i];
    TANDEM_CHECK(step != 0, ErrorCode::kInvalidModel, "{}: step is 0", node.describe());
    if (start < 0) start += dim;
    if (dim == 0) continue;  // empty output
    start = step > 0 ? std::clamp<int64_t>(start, 0, dim) : std::clamp<int64_t>(start, 0, dim - 1);
    if (y.dim(static_cast<size_t>(a)) > 0) first += start * in_strides[a];
    // A step of dim or more takes one element, so clamping it changes nothing and keeps
    // step * stride within the tensor's size (a step of 2^63 - 1 would wrap).
    strides[a] = std::clamp<int64_t>(step, -dim, dim) * in_strides[a];
  }
  strided_copy(ctx, bytes(y), bytes(x) + first * esize_of(x), y.shape(), strides, esize_of(x));
}

// ---- Gather family

void gather_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                   Outputs outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  size_t axis =
      static_cast<size_t>(normalize_axis(attrs.axis, static_cast<int64_t>(x.rank()), node));
  std::vector<int64_t> idx = tensor_to_int64s(*inputs[1], node);
  int64_t n = x.dim(axis);
  for (int64_t& i : idx) i = checked_index(i, n, node, "index");
  int64_t outer = product(x.shape(), 0, axis);
  int64_t inner = product(x.shape(), axis + 1, x.rank()) * esize_of(x);
  int64_t m = static_cast<int64_t>(idx.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < m; ++j)
      std::memcpy(bytes(y) + (o * m + j) * inner, bytes(x) + (o * n + idx[j]) * inner,
                  static_cast<size_t>(inner));
}

// GatherElements / ScatterElements: for element e of `ind` (walked in row-major order), the
// element offset into `x` it addresses — its own position, with the `axis` coordinate replaced by
// the index (checked against x's bounds).
template <typename F>
void for_each_indexed_element(const Node& node, int64_t axis_attr, const Tensor& x,
                              const Tensor& ind, F&& fn) {
  const int64_t rank = static_cast<int64_t>(x.rank());
  const int64_t axis = normalize_axis(axis_attr, rank, node);
  const std::vector<int64_t> idx = tensor_to_int64s(ind, node);
  const std::vector<int64_t> xs = contiguous_strides(x.shape());
  std::vector<int64_t> pos(static_cast<size_t>(rank), 0);
  for (int64_t e = 0; e < ind.numel(); ++e) {
    int64_t off = 0;
    for (int64_t d = 0; d < rank; ++d) {
      int64_t c = d == axis ? checked_index(idx[e], x.dim(d), node, "index") : pos[d];
      TANDEM_CHECK(c < x.dim(d), ErrorCode::kInvalidArgument, "{}: indices {} do not fit data {}",
                   node.describe(), shape_str(ind.shape()), shape_str(x.shape()));
      off += c * xs[d];
    }
    fn(e, off);
    next_position(pos, ind.shape());
  }
}

void gather_elements_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                            Outputs outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const Tensor& ind = *inputs[1];
  Tensor& y = *outputs[0];
  const int64_t es = esize_of(x);
  for_each_indexed_element(node, attrs.axis, x, ind, [&](int64_t e, int64_t off) {
    std::memcpy(bytes(y) + e * es, bytes(x) + off * es, static_cast<size_t>(es));
  });
}

void gather_nd_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                      Outputs outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  const Tensor& ind = *inputs[1];
  Tensor& y = *outputs[0];
  size_t b = static_cast<size_t>(attrs.batch_dims);
  std::vector<int64_t> idx = tensor_to_int64s(ind, node);
  size_t last = static_cast<size_t>(ind.shape().back());
  int64_t batches = product(ind.shape(), 0, b);
  int64_t tuples = product(ind.shape(), b, ind.rank() - 1);
  int64_t es = esize_of(x);
  int64_t slice = product(x.shape(), b + last, x.rank()) * es;
  int64_t x_batch = product(x.shape(), b, x.rank()) * es;
  std::vector<int64_t> xs = contiguous_strides(x.shape());
  for (int64_t bi = 0; bi < batches; ++bi) {
    for (int64_t t = 0; t < tuples; ++t) {
      const int64_t* tup = idx.data() + (bi * tuples + t) * static_cast<int64_t>(last);
      int64_t off = bi * x_batch;
      for (size_t k = 0; k < last; ++k)
        off += checked_index(tup[k], x.dim(b + k), node, "index") * xs[b + k] * es;
      std::memcpy(bytes(y) + (bi * tuples + t) * slice, bytes(x) + off, static_cast<size_t>(slice));
    }
  }
}

// ---- Scatter family

enum class Reduction { kNone, kAdd, kMul, kMax, kMin };

// TensorOpAttrs::parse checked the name.
Reduction reduction_of(const std::string& r) {
  if (r == "add") return Reduction::kAdd;
  if (r == "mul") return Reduction::kMul;
  if (r == "max") return Reduction::kMax;
  if (r == "min") return Reduction::kMin;
  return Reduction::kNone;
}

// dst[d] = reduce(dst[d], src[s]) for n elements; `none` is a plain byte copy.
void apply_update(const Node& node, Reduction red, DataType dt, uint8_t* dst, const uint8_t* src,
                  int64_t n) {
  int64_t es = static_cast<int64_t>(dtype_size(dt));
  if (red == Reduction::kNone) {
    std::memcpy(dst, src, static_cast<size_t>(n * es));
    return;
  }
  dispatch_numeric(dt, node, [&](auto tag) {
    using T = decltype(tag);
    T* d = reinterpret_cast<T*>(dst);
    const T* s = reinterpret_cast<const T*>(src);
    for (int64_t i = 0; i < n; ++i) {
      switch (red) {
        case Reduction::kAdd:
          d[i] = static_cast<T>(d[i] + s[i]);
          break;
        case Reduction::kMul:
          d[i] = static_cast<T>(d[i] * s[i]);
          break;
        case Reduction::kMax:
          d[i] = std::max(d[i], s[i]);
          break;
        case Reduction::kMin:
          d[i] = std::min(d[i], s[i]);
          break;
        case Reduction::kNone:
          break;
      }
    }
  });
}

// Scatter*: Y is X with every update written over (or reduced into) the elements it addresses.
// for_each(x, indices, put) calls put(y_offset, updates_offset, count) once per update, in
// elements.
template <typename ForEach>
void scatter(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs, Outputs outputs,
             const ForEach& for_each) {
  const Tensor& x = *inputs[0];
  const Tensor& upd = *inputs[2];
  Tensor& y = *outputs[0];
  const Reduction red = reduction_of(attrs.reduction);
  if (x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
  const int64_t es = esize_of(x);
  for_each(x, *inputs[1], [&](int64_t y_off, int64_t upd_off, int64_t count) {
    apply_update(ctx.node, red, x.dtype(), bytes(y) + y_off * es, bytes(upd) + upd_off * es, count);
  });
}

void scatter_elements_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                             Outputs outputs) {
  scatter(ctx, attrs, inputs, outputs, [&](const Tensor& x, const Tensor& ind, const auto& put) {
    for_each_indexed_element(ctx.node, attrs.axis, x, ind,
                             [&](int64_t e, int64_t off) { put(off, e, 1); });
  });
}

void scatter_nd_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                       Outputs outputs) {
  scatter(ctx, attrs, inputs, outputs, [&](const Tensor& x, const Tensor& ind, const auto& put) {
    const Node& node = ctx.node;
    std::vector<int64_t> idx = tensor_to_int64s(ind, node);
    size_t k = static_cast<size_t>(ind.shape().back());
    int64_t tuples = product(ind.shape(), 0, ind.rank() - 1);
    int64_t slice = product(x.shape(), k, x.rank());
    std::vector<int64_t> xs = contiguous_strides(x.shape());
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t off = 0;
      for (size_t j = 0; j < k; ++j)
        off += checked_index(idx[t * static_cast<int64_t>(k) + j], x.dim(j), node, "index") * xs[j];
      put(off, t * slice, slice);
    }
  });
}

// ---- Tile, Pad

void tile_kernel(const KernelContext& ctx, Inputs inputs, Outputs outputs) {
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  int64_t es = esize_of(x);
  if (y.numel() == 0) return;
  if (x.rank() == 0) {
    std::memcpy(y.raw(), x.raw(), static_cast<size_t>(es));
    return;
  }
  // Each output row (all axes but the last) repeats one input row.
  size_t r = x.rank();
  int64_t in_last = x.dim(r - 1), out_last = y.dim(r - 1);
  int64_t rows = y.numel() / out_last;
  std::vector<int64_t> xs = contiguous_strides(x.shape());
  ctx.pool.parallel_for(
      rows,
      [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          int64_t off = 0;
          for (int64_t rem = row, d = static_cast<int64_t>(r) - 2; d >= 0; --d) {
            off += (rem % y.dim(d)) % x.dim(d) * xs[d];
            rem /= y.dim(d);
          }
          for (int64_t j = 0; j < out_last; j += in_last)
            std::memcpy(bytes(y) + (row * out_last + j) * es, bytes(x) + off * es,
                        static_cast<size_t>(in_last * es));
        }
      },
      out_last);
}

// The bytes of `v` converted to dtype dt (for Pad's constant).
std::vector<uint8_t> scalar_bytes(double v, DataType dt, const Node& node) {
  std::vector<uint8_t> out(dtype_size(dt));
  if (dt == DataType::kFloat16 || dt == DataType::kBFloat16) {
    uint16_t h = dt == DataType::kFloat16 ? float_to_half(static_cast<float>(v))
                                          : float_to_bfloat16(static_cast<float>(v));
    std::memcpy(out.data(), &h, 2);
  } else if (dt == DataType::kBool) {
    out[0] = v != 0;
  } else {
    dispatch_numeric(dt, node, [&](auto tag) {
      using T = decltype(tag);
      T t = static_cast<T>(v);
      std::memcpy(out.data(), &t, sizeof(T));
    });
  }
  return out;
}

void pad_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                Outputs outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  int64_t rank = static_cast<int64_t>(x.rank());
  const std::string& mode = attrs.mode;
  std::vector<int64_t> pads, axes;
  std::vector<uint8_t> value;
  if (node.opset < 11) {
    pads = attrs.pads;
    value = scalar_bytes(attrs.value, x.dtype(), node);
  } else {
    pads = tensor_to_int64s(*inputs[1], node);
    if (inputs.size() > 2 && inputs[2] && inputs[2]->numel() > 0) {
      TANDEM_CHECK(inputs[2]->dtype() == x.dtype(), ErrorCode::kInvalidModel,
                   "{}: constant_value has dtype {}, data {}", node.describe(),
                   dtype_name(inputs[2]->dtype()), dtype_name(x.dtype()));
      value.assign(bytes(*inputs[2]), bytes(*inputs[2]) + esize_of(x));
    } else {
      value.assign(static_cast<size_t>(esize_of(x)), 0);
    }
    if (inputs.size() > 3 && inputs[3]) axes = tensor_to_int64s(*inputs[3], node);
  }
  if (axes.empty())
    for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
  size_t na = axes.size();
  std::vector<int64_t> begin(static_cast<size_t>(rank), 0);
  for (size_t i = 0; i < na; ++i) begin[normalize_axis(axes[i], rank, node)] = pads[i];
  // For every axis and output index: the source index, or -1 for the constant.
  std::vector<std::vector<int64_t>> src(static_cast<size_t>(rank));
  for (int64_t d = 0; d < rank; ++d) {
    int64_t n = x.dim(d);
    for (int64_t o = 0; o < y.dim(d); ++o) {
      int64_t i = o - begin[d];
      if (i < 0 || i >= n) {
        if (mode == "constant") {
          i = -1;
        } else if (mode == "edge") {
          i = std::clamp<int64_t>(i, 0, n - 1);
        } else {  // reflect (mirror without repeating the edge), any number of times
          int64_t period = 2 * (n - 1);
          if (period == 0) {
            i = 0;
          } else {
            i = std::abs(i) % period;
            if (i >= n) i = period - i;
          }
        }
      }
      src[d].push_back(i);
    }
  }
  int64_t es = esize_of(x);
  if (y.numel() == 0) return;
  if (rank == 0) {
    std::memcpy(y.raw(), x.raw(), static_cast<size_t>(es));
    return;
  }
  std::vector<int64_t> xs = contiguous_strides(x.shape());
  int64_t out_last = y.dim(rank - 1);
  int64_t rows = y.numel() / out_last;
  ctx.pool.parallel_for(
      rows,
      [&](int64_t row_begin, int64_t row_end) {
        for (int64_t row = row_begin; row < row_end; ++row) {
          int64_t off = 0;
          bool inside = true;
          for (int64_t rem = row, d = rank - 2; d >= 0; --d) {
            int64_t i = src[d][rem % y.dim(d)];
            rem /= y.dim(d);
            if (i < 0) inside = false;
            off += i * xs[d];
          }
          uint8_t* out = bytes(y) + row * out_last * es;
          for (int64_t j = 0; j < out_last; ++j) {
            int64_t i = src[rank - 1][j];
            const uint8_t* from = inside && i >= 0 ? bytes(x) + (off + i) * es : value.data();
            std::memcpy(out + j * es, from, static_cast<size_t>(es));
          }
        }
      },
      out_last);
}

// ---- DepthToSpace, SpaceToDepth (strided views of 6-D reshapes)

void depth_to_space_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                           Outputs outputs) {
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  int64_t b = attrs.blocksize;
  bool crd = attrs.mode == "CRD";
  int64_t n = x.dim(0), c = x.dim(1) / (b * b), h = x.dim(2), w = x.dim(3);
  // DCR reads the input as [N, b1, b2, C', H, W]; CRD as [N, C', b1, b2, H, W].
  Shape view = crd ? Shape{n, c, b, b, h, w} : Shape{n, b, b, c, h, w};
  std::vector<int64_t> s = contiguous_strides(view);
  int64_t sc = crd ? s[1] : s[3], sb1 = crd ? s[2] : s[1], sb2 = crd ? s[3] : s[2];
  // Output [N, C', H, b1, W, b2].
  strided_copy(ctx, bytes(y), bytes(x), {n, c, h, b, w, b}, {s[0], sc, s[4], sb1, s[5], sb2},
               esize_of(x));
}

void space_to_depth_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                           Outputs outputs) {
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  int64_t b = attrs.blocksize;
  int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2) / b, w = x.dim(3) / b;
  // Input as [N, C, H', b1, W', b2]; output [N, b1, b2, C, H', W'].
  std::vector<int64_t> s = contiguous_strides({n, c, h, b, w, b});
  strided_copy(ctx, bytes(y), bytes(x), {n, b, b, c, h, w}, {s[0], s[3], s[5], s[1], s[2], s[4]},
               esize_of(x));
}

// ---- OneHot, NonZero, Trilu, CumSum, TopK

// Reads any numeric tensor as int64 (floats truncate toward zero).
std::vector<int64_t> read_as_int64(const Tensor& t, const Node& node) {
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  dispatch_numeric(t.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(t.data<T>()[i]);
  });
  return v;
}

void one_hot_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                    Outputs outputs) {
  const Node& node = ctx.node;
  const Tensor& ind = *inputs[0];
  const Tensor& values = *inputs[2];
  Tensor& y = *outputs[0];
  size_t axis =
      static_cast<size_t>(normalize_axis(attrs.axis, static_cast<int64_t>(ind.rank()) + 1, node));
  int64_t depth = y.dim(axis);
  std::vector<int64_t> idx = read_as_int64(ind, node);
  int64_t es = esize_of(y);
  const uint8_t* off_v = bytes(values);
  const uint8_t* on_v = bytes(values) + es;
  int64_t outer = product(ind.shape(), 0, axis);
  int64_t inner = product(ind.shape(), axis, ind.rank());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      int64_t v = idx[static_cast<size_t>(o * inner + in)];
      if (v < 0) v += depth;  // negative indices count from the end; others out of range: all off
      for (int64_t d = 0; d < depth; ++d)
        std::memcpy(bytes(y) + ((o * depth + d) * inner + in) * es, d == v ? on_v : off_v,
                    static_cast<size_t>(es));
    }
  }
}

void non_zero_kernel(const KernelContext& ctx, Inputs inputs, Outputs outputs) {
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  int64_t rank = static_cast<int64_t>(x.rank());
  int64_t count = y.dim(1);
  int64_t* out = y.data<int64_t>();
  std::vector<int64_t> pos(static_cast<size_t>(rank), 0);
  int64_t k = 0;
  for (int64_t e = 0; e < x.numel(); ++e) {
    if (element_nonzero(x, e)) {
      TANDEM_CHECK(k < count, ErrorCode::kInternal, "{}: more non-zeros than inferred",
                   ctx.node.describe());
      for (int64_t d = 0; d < rank; ++d) out[d * count + k] = pos[d];
      ++k;
    }
    next_position(pos, x.shape());
  }
}

void trilu_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                  Outputs outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  bool upper = attrs.upper;
  int64_t k = 0;
  if (inputs.size() > 1 && inputs[1]) {
    std::vector<int64_t> kv = tensor_to_int64s(*inputs[1], node);
    TANDEM_CHECK(kv.size() == 1, ErrorCode::kInvalidModel, "{}: k must be a scalar",
                 node.describe());
    k = kv[0];
  }
  size_t r = x.rank();
  int64_t rows = x.dim(r - 2), cols = x.dim(r - 1), es = esize_of(x);
  int64_t mats = product(x.shape(), 0, r - 2);
  // A k known only at run time comes from a caller: beyond these bounds every row keeps all or
  // nothing either way, and i + k cannot wrap.
  k = std::clamp<int64_t>(k, -rows - 1, cols + 1);
  // Output arrives zero-filled: copy the kept part of every row (upper: j >= i + k, lower:
  // j <= i + k).
  for (int64_t m = 0; m < mats; ++m) {
    for (int64_t i = 0; i < rows; ++i) {
      int64_t lo = upper ? std::clamp<int64_t>(i + k, 0, cols) : 0;
      int64_t hi = upper ? cols : std::clamp<int64_t>(i + k + 1, 0, cols);
      if (hi <= lo) continue;
      int64_t off = ((m * rows + i) * cols + lo) * es;
      std::memcpy(bytes(y) + off, bytes(x) + off, static_cast<size_t>((hi - lo) * es));
    }
  }
}

void cum_sum_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                    Outputs outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  std::vector<int64_t> av = tensor_to_int64s(*inputs[1], node);
  TANDEM_CHECK(av.size() == 1, ErrorCode::kInvalidModel, "{}: axis must be a scalar",
               node.describe());
  size_t axis = static_cast<size_t>(normalize_axis(av[0], static_cast<int64_t>(x.rank()), node));
  bool exclusive = attrs.exclusive;
  bool reverse = attrs.reverse;
  int64_t outer = product(x.shape(), 0, axis), n = x.dim(axis);
  int64_t inner = product(x.shape(), axis + 1, x.rank());
  dispatch_numeric(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    T* out = y.data<T>();
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t j = 0; j < inner; ++j) {
        T acc = T(0);
        for (int64_t s = 0; s < n; ++s) {
          int64_t i = reverse ? n - 1 - s : s;
          int64_t at = (o * n + i) * inner + j;
          if (exclusive) {
            out[at] = acc;
            acc = static_cast<T>(acc + in[at]);
          } else {
            acc = static_cast<T>(acc + in[at]);
            out[at] = acc;
          }
        }
      }
    }
  });
}

void top_k_kernel(const KernelContext& ctx, const TensorOpAttrs& attrs, Inputs inputs,
                  Outputs outputs) {
  const Node& node = ctx.node;
  const Tensor& x = *inputs[0];
  Tensor& values = *outputs[0];
  int64_t* indices = outputs.size() > 1 && outputs[1] ? outputs[1]->data<int64_t>() : nullptr;
  size_t axis =
      static_cast<size_t>(normalize_axis(attrs.axis, static_cast<int64_t>(x.rank()), node));
  bool largest = attrs.largest;
  int64_t k = values.dim(axis), n = x.dim(axis);
  int64_t outer = product(x.shape(), 0, axis), inner = product(x.shape(), axis + 1, x.rank());
  dispatch_numeric(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.data<T>();
    T* out = values.data<T>();
    std::vector<int64_t> order(static_cast<size_t>(n));
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t j = 0; j < inner; ++j) {
        auto at = [&](int64_t i) { return in[(o * n + i) * inner + j]; };
        std::iota(order.begin(), order.end(), 0);
        // Ties keep the lower index first (the spec's rule); results are always sorted.
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
          T va = at(a), vb = at(b);
          if (va != vb) return largest ? va > vb : va < vb;
          return a < b;
        });
        for (int64_t i = 0; i < k; ++i) {
          out[(o * k + i) * inner + j] = at(order[i]);
          if (indices) indices[(o * k + i) * inner + j] = order[i];
        }
      }
    }
  });
}

// ---- Einsum: a plain loop over the product of all label ranges.

void einsum_kernel(const KernelContext& ctx, Inputs inputs, Outputs outputs) {
  const Node& node = ctx.node;
  Tensor& y = *outputs[0];
  const EinsumEquation eq = parse_einsum_equation(node, inputs.size());
  const std::vector<std::string>& terms = eq.terms;
  // Labels: letters 0..51, ellipsis dims 52.. (right-aligned across operands).
  const int kEll = 52;
  int64_t ell_rank = 0;
  std::vector<std::vector<int>> labels(terms.size());
  for (size_t i = 0; i < terms.size(); ++i) {
    size_t e = terms[i].find("...");
    int64_t letters = static_cast<int64_t>(terms[i].size()) - (e == std::string::npos ? 0 : 3);
    ell_rank = std::max(ell_rank, static_cast<int64_t>(inputs[i]->rank()) - letters);
  }
  std::map<int, int64_t> size;
  std::map<int, int> uses;
  for (size_t i = 0; i < terms.size(); ++i) {
    const std::string& t = terms[i];
    const Shape& s = inputs[i]->shape();
    size_t e = t.find("...");
    int64_t ne = static_cast<int64_t>(s.size()) -
                 (static_cast<int64_t>(t.size()) - (e == std::string::npos ? 0 : 3));
    for (size_t p = 0; p < t.size(); ++p) {
      if (p == e) {
        for (int64_t k = 0; k < ne; ++k)
          labels[i].push_back(kEll + static_cast<int>(ell_rank - ne + k));
        p += 2;
        continue;
      }
      labels[i].push_back(einsum_letter(t[p]));
      uses[labels[i].back()]++;
    }
    TANDEM_CHECK(labels[i].size() == s.size(), ErrorCode::kInvalidArgument,
                 "{}: operand {} '{}' does not match its shape {}", node.describe(), i, t,
                 shape_str(s));
    for (size_t d = 0; d < s.size(); ++d) {
      int l = labels[i][d];
      auto it = size.find(l);
      if (it == size.end() || it->second == 1) {
        size[l] = s[d];
      } else {
        TANDEM_CHECK(s[d] == it->second || (l >= kEll && s[d] == 1), ErrorCode::kInvalidArgument,
                     "{}: dimension sizes {} and {} do not match", node.describe(), it->second,
                     s[d]);
      }
    }
  }
  std::vector<int> out_labels;
  if (eq.has_output) {
    const std::string& rhs = eq.output;
    for (size_t p = 0; p < rhs.size(); ++p) {
      if (rhs.compare(p, 3, "...") == 0) {
        for (int64_t k = 0; k < ell_rank; ++k) out_labels.push_back(kEll + static_cast<int>(k));
        p += 2;
        continue;
      }
      out_labels.push_back(einsum_letter(rhs[p]));
    }
  } else {
    for (int64_t k = 0; k < ell_rank; ++k) out_labels.push_back(kEll + static_cast<int>(k));
    for (auto& [l, n] : uses)
      if (n == 1) out_labels.push_back(l);
  }
  // Loop order: output labels first, then the summed ones.
  std::vector<int> all = out_labels;
  for (auto& [l, n] : size)
    if (std::find(all.begin(), all.end(), l) == all.end()) all.push_back(l);
  size_t nl = all.size();
  std::vector<int64_t> extent(nl);
  for (size_t a = 0; a < nl; ++a) extent[a] = size[all[a]];
  // Strides of each operand (and the output) per loop label: repeated labels add up (diagonal),
  // broadcast ellipsis dims of size 1 stay 0.
  auto strides_for = [&](const std::vector<int>& labs, const Shape& s) {
    std::vector<int64_t> cs = contiguous_strides(s), st(nl, 0);
    for (size_t d = 0; d < labs.size(); ++d) {
      if (s[d] == 1 && extent[std::find(all.begin(), all.end(), labs[d]) - all.begin()] != 1)
        continue;
      st[std::find(all.begin(), all.end(), labs[d]) - all.begin()] += cs[d];
    }
    return st;
  };
  std::vector<std::vector<int64_t>> in_st;
  for (size_t i = 0; i < inputs.size(); ++i)
    in_st.push_back(strides_for(labels[i], inputs[i]->shape()));
  std::vector<int64_t> out_st = strides_for(out_labels, y.shape());
  int64_t total = 1;
  for (int64_t e : extent) total *= e;
  if (total == 0) return;
  dispatch_numeric(y.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    T* out = y.data<T>();
    std::vector<int64_t> pos(nl, 0);
    for (int64_t it = 0; it < total; ++it) {
      T prod = T(1);
      for (size_t i = 0; i < inputs.size(); ++i) {
        int64_t off = 0;
        for (size_t a = 0; a < nl; ++a) off += pos[a] * in_st[i][a];
        prod = static_cast<T>(prod * inputs[i]->data<T>()[off]);
      }
      int64_t o = 0;
      for (size_t a = 0; a < nl; ++a) o += pos[a] * out_st[a];
      out[o] = static_cast<T>(out[o] + prod);
      for (size_t a = nl; a-- > 0;) {
        if (++pos[a] < extent[a]) break;
        pos[a] = 0;
      }
    }
  });
}

}  // namespace

void register_tensor_ref_kernels(KernelRegistry& r) {
  r.add("Transpose", transpose_kernel);
  r.add("Concat", concat_kernel);
  r.add("Split", split_kernel);
  r.add("Slice", slice_kernel);
  r.add("Gather", gather_kernel);
  r.add("GatherElements", gather_elements_kernel);
  r.add("GatherND", gather_nd_kernel);
  r.add("ScatterElements", scatter_elements_kernel);
  r.add("Scatter", scatter_elements_kernel);
  r.add("ScatterND", scatter_nd_kernel);
  r.add("Tile", tile_kernel);
  r.add("Pad", pad_kernel);
  r.add("DepthToSpace", depth_to_space_kernel);
  r.add("SpaceToDepth", space_to_depth_kernel);
  r.add("OneHot", one_hot_kernel);
  r.add("NonZero", non_zero_kernel);
  r.add("Trilu", trilu_kernel);
  r.add("CumSum", cum_sum_kernel);
  r.add("TopK", top_k_kernel);
  r.add("Einsum", einsum_kernel);
}

}  // namespace tandem

// Schemas of the tensor family: data movement and indexing ops (Transpose, Concat, Split, Slice,
// Gather*, Scatter*, Tile, Pad, DepthToSpace, SpaceToDepth, OneHot, NonZero, Trilu, CumSum,
// TopK, Einsum).
#include "ops/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "core/checked.h"
#include "core/error.h"
#include "ops/einsum.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"
#include "ops/slice.h"

namespace tandem {

TransposeAttrs TransposeAttrs::parse(const Node& node) {
  TransposeAttrs a;
  a.perm = node.attr_ints_or("perm", {});
  return a;
}

std::vector<int64_t> TransposeAttrs::perm_for(int64_t rank, const Node& node) const {
  if (perm.empty()) {
    std::vector<int64_t> reversed;
    for (int64_t d = rank - 1; d >= 0; --d) reversed.push_back(d);
    return reversed;
  }
  Shape axes(static_cast<size_t>(rank));
  for (int64_t d = 0; d < rank; ++d) axes[static_cast<size_t>(d)] = d;
  permuted(axes, perm, node, "perm");  // checks perm
  return perm;
}

TensorOpAttrs TensorOpAttrs::parse(const Node& node) {
  TensorOpAttrs a;
  const std::string& op = node.op_type;
  if (op == "OneHot" || op == "TopK") a.axis = node.attr_int_or("axis", -1);
  if (op == "Split" || op == "Gather" || op == "GatherElements" || op == "ScatterElements" ||
      op == "Scatter")
    a.axis = node.attr_int_or("axis", 0);
  if (op == "Split") {
    if (node.opset < 13) a.split = node.attr_ints_or("split", {});
    if (node.opset >= 18 && node.has_attr("num_outputs")) {
      a.num_outputs = node.attr_int("num_outputs");
      TANDEM_CHECK(a.num_outputs > 0, ErrorCode::kInvalidModel, "{}: num_outputs must be positive",
                   node.describe());
    }
  } else if (op == "GatherND") {
    a.batch_dims = node.attr_int_or("batch_dims", 0);
  } else if (op == "ScatterElements" || op == "ScatterND") {
    a.reduction = node.attr_string_or("reduction", "none");
    TANDEM_CHECK(a.reduction == "none" || a.reduction == "add" || a.reduction == "mul" ||
                     a.reduction == "max" || a.reduction == "min",
                 ErrorCode::kUnsupported, "{}: reduction '{}' is not supported", node.describe(),
                 a.reduction);
  } else if (op == "Pad") {
    a.mode = node.attr_string_or("mode", "constant");
    TANDEM_CHECK(a.mode == "constant" || a.mode == "reflect" || a.mode == "edge",
                 ErrorCode::kUnsupported, "{}: mode '{}' is not supported", node.describe(),
                 a.mode);
    if (node.opset < 11) {
      a.pads = node.attr_ints("pads");
      a.value = node.attr_float_or("value", 0.0f);
    }
  } else if (op == "DepthToSpace" || op == "SpaceToDepth") {
    a.blocksize = node.attr_int("blocksize");  // checked against the input by the schema
    if (op == "DepthToSpace") {
      a.mode = node.attr_string_or("mode", "DCR");
      TANDEM_CHECK(a.mode == "DCR" || a.mode == "CRD", ErrorCode::kUnsupported,
                   "{}: mode '{}' is not supported", node.describe(), a.mode);
    }
  } else if (op == "Trilu") {
    a.upper = node.attr_int_or("upper", 1) != 0;
  } else if (op == "CumSum") {
    a.exclusive = node.attr_int_or("exclusive", 0) != 0;
    a.reverse = node.attr_int_or("reverse", 0) != 0;
  } else if (op == "TopK") {
    a.largest = node.attr_int_or("largest", 1) != 0;
    if (node.opset < 10) a.k = node.attr_int("k");
  }
  return a;
}

ConcatAttrs ConcatAttrs::parse(const Node& node) {
  ConcatAttrs a;
  a.axis = node.attr_int("axis");
  return a;
}

namespace {

std::vector<int64_t> int64s_of(const InferContext& ctx, size_t i) {
  return tensor_to_int64s(ctx.require_value(i), ctx.node);
}

int64_t rank_of(const TensorType& t) {
  return static_cast<int64_t>(t.shape.size());
}

std::vector<TensorType> infer_transpose(const InferContext& ctx, const TransposeAttrs& a) {
  const TensorType& x = ctx.input(0);
  return {{x.dtype, permuted(x.shape, a.perm_for(rank_of(x), ctx.node), ctx.node, "perm")}};
}

std::vector<TensorType> infer_concat(const InferContext& ctx, const ConcatAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& first = ctx.input(0);
  int64_t rank = rank_of(first);
  int64_t axis = normalize_axis(a.axis, rank, node);
  Shape out = first.shape;
  out[axis] = 0;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const TensorType& t = ctx.input(i);
    TANDEM_CHECK(t.dtype == first.dtype, ErrorCode::kInvalidModel,
                 "{}: input {} has dtype {}, input 0 has {}", node.describe(), i,
                 dtype_name(t.dtype), dtype_name(first.dtype));
    bool ok = rank_of(t) == rank;
    for (int64_t d = 0; ok && d < rank; ++d) ok = d == axis || t.shape[d] == first.shape[d];
    TANDEM_CHECK(ok, ErrorCode::kInvalidArgument,
                 "{}: input {} has shape {}, incompatible with input 0 {} along axis {}",
                 node.describe(), i, shape_str(t.shape), shape_str(first.shape), axis);
    out[axis] = checked_add(out[axis], t.shape[axis], node.describe());
  }
  return {{first.dtype, out}};
}

std::vector<TensorType> infer_split(const InferContext& ctx, const TensorOpAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  int64_t axis = normalize_axis(a.axis, rank_of(x), node);
  int64_t dim = x.shape[axis];
  int64_t n = static_cast<int64_t>(node.outputs.size());
  std::vector<int64_t> split;
  if (node.opset >= 13) {
    if (ctx.has_input(1)) split = int64s_of(ctx, 1);
  } else {
    split = a.split;
  }
  if (split.empty()) {
    if (a.num_outputs > 0) {
      // num_outputs: equal chunks of ceil(dim / n), the last one smaller. It must be the node's
      // output count (as ONNX says): it comes from the file, and a list of 2^62 split sizes
      // would not fit in memory.
      TANDEM_CHECK(a.num_outputs == n, ErrorCode::kInvalidModel,
                   "{}: num_outputs {} differs from the node's {} outputs", node.describe(),
                   a.num_outputs, n);
      const int64_t chunk = ceil_div(dim, n);
      int64_t left = dim;
      for (int64_t i = 0; i < n; ++i) {
        split.push_back(std::min(chunk, left));
        left -= split.back();
      }
    } else {
      TANDEM_CHECK(n > 0 && dim % n == 0, ErrorCode::kInvalidArgument,
                   "{}: axis {} of size {} cannot be split into {} equal parts", node.describe(),
                   axis, dim, n);
      split.assign(static_cast<size_t>(n), dim / n);
    }
  }
  int64_t total = 0;
  for (int64_t s : split) {
    TANDEM_CHECK(s >= 0, ErrorCode::kInvalidModel, "{}: negative split {}", node.describe(),
                 fmt::format("{}", split));
    total = checked_add(total, s, node.describe() + ": split");
  }
  TANDEM_CHECK(total == dim, ErrorCode::kInvalidArgument,
               "{}: split {} does not add up to the size {} of axis {} (input {})", node.describe(),
               fmt::format("{}", split), dim, axis, shape_str(x.shape));
  TANDEM_CHECK(split.size() >= node.outputs.size(), ErrorCode::kInvalidModel,
               "{}: {} outputs but only {} split sizes", node.describe(), node.outputs.size(),
               split.size());
  std::vector<TensorType> outs;
  for (int64_t s : split) {
    Shape o = x.shape;
    o[axis] = s;
    outs.push_back({x.dtype, o});
  }
  return outs;
}

}  // namespace

SliceParams read_slice_params(const Node& node,
                              const std::function<std::vector<int64_t>(size_t)>& input) {
  SliceParams p;
  if (node.opset < 10) {
    p.starts = node.attr_ints("starts");
    p.ends = node.attr_ints("ends");
    p.axes = node.attr_ints_or("axes", {});
  } else {
    p.starts = input(1);
    p.ends = input(2);
    p.axes = input(3);
    p.steps = input(4);
  }
  if (p.axes.empty())
    for (size_t i = 0; i < p.starts.size(); ++i) p.axes.push_back(static_cast<int64_t>(i));
  if (p.steps.empty()) p.steps.assign(p.starts.size(), 1);
  const size_t n = p.starts.size();
  TANDEM_CHECK(p.ends.size() == n && p.axes.size() == n && p.steps.size() == n,
               ErrorCode::kInvalidModel, "{}: starts, ends, axes and steps differ in length",
               node.describe());
  return p;
}

namespace {

// Per input axis: first index, step and count of the slice (the spec's clamping rules).
struct SliceDim {
  int64_t start = 0, step = 1, count = 0;
};

std::vector<SliceDim> slice_dims(const InferContext& ctx) {
  const Node& node = ctx.node;
  const Shape& shape = ctx.input(0).shape;
  int64_t rank = static_cast<int64_t>(shape.size());
  // Starts and ends are required inputs (int64s_of names a missing one); axes and steps are not.
  const auto [starts, ends, axes, steps] = read_slice_params(node, [&](size_t i) {
    return i < 3 || ctx.has_input(i) ? int64s_of(ctx, i) : std::vector<int64_t>{};
  });
  std::vector<SliceDim> dims(static_cast<size_t>(rank));
  for (int64_t d = 0; d < rank; ++d) dims[d].count = shape[d];
  std::set<int64_t> seen;
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t a = normalize_axis(axes[i], rank, node);
    TANDEM_CHECK(seen.insert(a).second, ErrorCode::kInvalidModel, "{}: axis {} repeats",
                 node.describe(), axes[i]);
    int64_t dim = shape[a], step = steps[i], start = starts[i], end = ends[i];
    TANDEM_CHECK(step != 0, ErrorCode::kInvalidModel, "{}: step is 0", node.describe());
    if (start < 0) start += dim;
    if (end < 0) end += dim;
    int64_t count;
    if (dim == 0) {
      start = 0;
      count = 0;
    } else if (step > 0) {
      // ceil((end - start) / step), written so that a step near 2^63 (a value from the file)
      // does not wrap, and without negating a step of -2^63.
      start = std::clamp<int64_t>(start, 0, dim);
      end = std::clamp<int64_t>(end, 0, dim);
      count = end > start ? (end - start - 1) / step + 1 : 0;
    } else {
      start = std::clamp<int64_t>(start, 0, dim - 1);
      end = std::clamp<int64_t>(end, -1, dim - 1);
      count = start > end ? 1 - (start - end - 1) / step : 0;
    }
    dims[a] = {start, step, count};
  }
  return dims;
}

std::vector<TensorType> infer_slice(const InferContext& ctx) {
  std::vector<SliceDim> dims = slice_dims(ctx);
  Shape out;
  for (const SliceDim& d : dims) out.push_back(d.count);
  return {{ctx.input(0).dtype, out}};
}

void check_index_dtype(const Node& node, DataType dt, const char* what) {
  TANDEM_CHECK(dt == DataType::kInt32 || dt == DataType::kInt64, ErrorCode::kInvalidModel,
               "{}: {} must be int32 or int64, got {}", node.describe(), what, dtype_name(dt));
}

std::vector<TensorType> infer_gather(const InferContext& ctx, const TensorOpAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  const TensorType& idx = ctx.input(1);
  check_index_dtype(node, idx.dtype, "indices");
  int64_t axis = normalize_axis(a.axis, rank_of(x), node);
  Shape out(x.shape.begin(), x.shape.begin() + axis);
  out.insert(out.end(), idx.shape.begin(), idx.shape.end());
  out.insert(out.end(), x.shape.begin() + axis + 1, x.shape.end());
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_gather_elements(const InferContext& ctx, const TensorOpAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  const TensorType& idx = ctx.input(1);
  check_index_dtype(node, idx.dtype, "indices");
  normalize_axis(a.axis, rank_of(x), node);
  TANDEM_CHECK(idx.shape.size() == x.shape.size(), ErrorCode::kInvalidModel,
               "{}: indices {} and data {} must have the same rank", node.describe(),
               shape_str(idx.shape), shape_str(x.shape));
  return {{x.dtype, idx.shape}};
}

std::vector<TensorType> infer_gather_nd(const InferContext& ctx, const TensorOpAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  const TensorType& idx = ctx.input(1);
  check_index_dtype(node, idx.dtype, "indices");
  int64_t b = a.batch_dims;
  int64_t r = rank_of(x), q = rank_of(idx);
  TANDEM_CHECK(q >= 1 && b >= 0 && b < q && b < r, ErrorCode::kInvalidModel,
               "{}: batch_dims {} is invalid for data {} and indices {}", node.describe(), b,
               shape_str(x.shape), shape_str(idx.shape));
  int64_t last = idx.shape.back();
  TANDEM_CHECK(last >= 1 && last <= r - b, ErrorCode::kInvalidModel,
               "{}: indices {} index {} dims, data {} has only {} after batch_dims {}",
               node.describe(), shape_str(idx.shape), last, shape_str(x.shape), r - b, b);
  for (int64_t d = 0; d < b; ++d)
    TANDEM_CHECK(x.shape[d] == idx.shape[d], ErrorCode::kInvalidArgument,
                 "{}: batch dims of data {} and indices {} differ", node.describe(),
                 shape_str(x.shape), shape_str(idx.shape));
  Shape out(idx.shape.begin(), idx.shape.end() - 1);
  out.insert(out.end(), x.shape.begin() + b + last, x.shape.end());
  return {{x.dtype, out}};
}

// Scatter*'s data, indices and updates, the indices checked to be int32 or int64.
struct ScatterInputs {
  const TensorType& x;
  const TensorType& idx;
  const TensorType& upd;
};

ScatterInputs scatter_inputs(const InferContext& ctx) {
  ScatterInputs in{ctx.input(0), ctx.input(1), ctx.input(2)};
  check_index_dtype(ctx.node, in.idx.dtype, "indices");
  return in;
}

std::vector<TensorType> infer_scatter_elements(const InferContext& ctx, const TensorOpAttrs& a) {
  const Node& node = ctx.node;
  const auto [x, idx, upd] = scatter_inputs(ctx);
  normalize_axis(a.axis, rank_of(x), node);
  TANDEM_CHECK(idx.shape == upd.shape && idx.shape.size() == x.shape.size(),
               ErrorCode::kInvalidModel,
               "{}: indices {} and updates {} must have the same shape and the rank of data {}",
               node.describe(), shape_str(idx.shape), shape_str(upd.shape), shape_str(x.shape));
  TANDEM_CHECK(upd.dtype == x.dtype, ErrorCode::kInvalidModel, "{}: updates dtype {} != data {}",
               node.describe(), dtype_name(upd.dtype), dtype_name(x.dtype));
  return {{x.dtype, x.shape}};
}

std::vector<TensorType> infer_scatter_nd(const InferContext& ctx, const TensorOpAttrs&) {
  const Node& node = ctx.node;
  const auto [x, idx, upd] = scatter_inputs(ctx);
  TANDEM_CHECK(!idx.shape.empty() && idx.shape.back() <= rank_of(x), ErrorCode::kInvalidModel,
               "{}: indices {} do not fit data {}", node.describe(), shape_str(idx.shape),
               shape_str(x.shape));
  Shape expect(idx.shape.begin(), idx.shape.end() - 1);
  expect.insert(expect.end(), x.shape.begin() + idx.shape.back(), x.shape.end());
  TANDEM_CHECK(upd.shape == expect, ErrorCode::kInvalidModel,
               "{}: updates have shape {}, expected {}", node.describe(), shape_str(upd.shape),
               shape_str(expect));
  return {{x.dtype, x.shape}};
}

std::vector<TensorType> infer_tile(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  std::vector<int64_t> reps = int64s_of(ctx, 1);
  TANDEM_CHECK(reps.size() == x.shape.size(), ErrorCode::kInvalidModel,
               "{}: repeats {} must have one entry per dim of {}", node.describe(),
               fmt::format("{}", reps), shape_str(x.shape));
  Shape out = x.shape;
  for (size_t d = 0; d < out.size(); ++d) {
    TANDEM_CHECK(reps[d] >= 0, ErrorCode::kInvalidModel, "{}: negative repeat in {}",
                 node.describe(), fmt::format("{}", reps));
    out[d] = checked_mul(out[d], reps[d], node.describe());
  }
  return {{x.dtype, out}};
}

// The largest pad (Pad) or diagonal offset (Trilu) magnitude: index arithmetic on them stays
// within int64 for any tensor that fits in memory.
constexpr int64_t kMaxOffset = int64_t{1} << 62;

std::vector<TensorType> infer_pad(const InferContext& ctx, const TensorOpAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  int64_t rank = rank_of(x);
  std::vector<int64_t> pads;
  std::vector<int64_t> axes;
  if (node.opset < 11) {
    pads = a.pads;
  } else {
    pads = int64s_of(ctx, 1);
    if (ctx.has_input(3)) axes = int64s_of(ctx, 3);
  }
  if (axes.empty())
    for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
  int64_t na = static_cast<int64_t>(axes.size());
  TANDEM_CHECK(static_cast<int64_t>(pads.size()) == 2 * na, ErrorCode::kInvalidModel,
               "{}: pads {} must have 2 x {} entries", node.describe(), fmt::format("{}", pads),
               na);
  const std::string& mode = a.mode;
  // The kernels compute output index - begin pad and mirror it (std::abs): a pad beyond 2^62
  // would wrap there. A pad that large fits no memory (a crop that large leaves nothing), so no
  // model that can run needs one.
  for (int64_t p : pads)
    TANDEM_CHECK(p >= -kMaxOffset && p <= kMaxOffset, ErrorCode::kInvalidArgument,
                 "{}: pads {} must be within +-2^62", node.describe(), fmt::format("{}", pads));
  Shape out = x.shape;
  for (int64_t i = 0; i < na; ++i) {
    int64_t a = normalize_axis(axes[i], rank, node);
    bool wraps = __builtin_add_overflow(out[a], pads[i], &out[a]) ||
                 __builtin_add_overflow(out[a], pads[i + na], &out[a]);
    TANDEM_CHECK(!wraps && out[a] >= 0, ErrorCode::kInvalidArgument,
                 "{}: pads {} make axis {} of {} negative", node.describe(),
                 fmt::format("{}", pads), a, shape_str(x.shape));
    TANDEM_CHECK(mode == "constant" || x.shape[a] > 0 || out[a] == 0, ErrorCode::kInvalidArgument,
                 "{}: cannot {}-pad the empty axis {} of {}", node.describe(), mode, a,
                 shape_str(x.shape));
  }
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_depth_to_space(const InferContext& ctx, const TensorOpAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  int64_t b = a.blocksize;
  // b * b and H * b must not wrap: blocksize is bounded by the channel count it divides.
  TANDEM_CHECK(x.shape.size() == 4 && b > 0 && b <= (int64_t{1} << 31) && x.shape[1] % (b * b) == 0,
               ErrorCode::kInvalidArgument,
               "{}: input {} must be 4-D with channels divisible by blocksize^2 (blocksize {})",
               node.describe(), shape_str(x.shape), b);
  return {{x.dtype,
           {x.shape[0], x.shape[1] / (b * b), checked_mul(x.shape[2], b, node.describe()),
            checked_mul(x.shape[3], b, node.describe())}}};
}

std::vector<TensorType> infer_space_to_depth(const InferContext& ctx, const TensorOpAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  int64_t b = a.blocksize;
  TANDEM_CHECK(x.shape.size() == 4 && b > 0 && x.shape[2] % b == 0 && x.shape[3] % b == 0,
               ErrorCode::kInvalidArgument,
               "{}: input {} must be 4-D with H and W divisible by blocksize {}", node.describe(),
               shape_str(x.shape), b);
  return {
      {x.dtype,
       {x.shape[0], checked_mul(checked_mul(x.shape[1], b, node.describe()), b, node.describe()),
        x.shape[2] / b, x.shape[3] / b}}};
}

std::vector<TensorType> infer_one_hot(const InferContext& ctx, const TensorOpAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& idx = ctx.input(0);
  const TensorType& values = ctx.input(2);
  TANDEM_CHECK(shape_numel(values.shape) == 2, ErrorCode::kInvalidModel,
               "{}: values must hold 2 elements [off, on], has shape {}", node.describe(),
               shape_str(values.shape));
  double depth_d = tensor_scalar_as_double(ctx.require_value(1), node);
  // Checked as a double: casting NaN or a value of 2^63 or more to int64 is undefined.
  TANDEM_CHECK(depth_d >= 1 && depth_d < 0x1p63, ErrorCode::kInvalidArgument,
               "{}: depth {} must be positive", node.describe(), depth_d);
  const int64_t depth = static_cast<int64_t>(depth_d);
  int64_t axis = normalize_axis(a.axis, rank_of(idx) + 1, node);
  Shape out = idx.shape;
  out.insert(out.begin() + axis, depth);
  return {{values.dtype, out}};
}

std::vector<TensorType> infer_non_zero(const InferContext& ctx) {
  // The output size depends on the data: known only once the input's value is.
  const Tensor& x = ctx.require_value(0);
  int64_t count = 0;
  for (int64_t i = 0; i < x.numel(); ++i) count += element_nonzero(x, i) ? 1 : 0;
  return {{DataType::kInt64, {static_cast<int64_t>(x.rank()), count}}};
}

std::vector<TensorType> infer_trilu(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(x.shape.size() >= 2, ErrorCode::kInvalidModel, "{}: input {} must have rank >= 2",
               ctx.node.describe(), shape_str(x.shape));
  // The kernel adds k to a row index; where k is a constant, one beyond +-2^62 (which keeps all
  // or nothing of any matrix that fits in memory) is refused here rather than wrapped there.
  if (ctx.has_input(1) && ctx.value(1)) {
    for (int64_t k : tensor_to_int64s(*ctx.value(1), ctx.node))
      TANDEM_CHECK(k >= -kMaxOffset && k <= kMaxOffset, ErrorCode::kInvalidArgument,
                   "{}: k {} must be within +-2^62", ctx.node.describe(), k);
  }
  return {x};
}

std::vector<TensorType> infer_cum_sum(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  check_index_dtype(ctx.node, ctx.input(1).dtype, "axis");
  return {x};
}

std::vector<TensorType> infer_top_k(const InferContext& ctx, const TensorOpAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  int64_t axis = normalize_axis(a.axis, rank_of(x), node);
  int64_t k;
  if (node.opset < 10) {
    k = a.k;
  } else {
    std::vector<int64_t> kv = int64s_of(ctx, 1);
    TANDEM_CHECK(kv.size() == 1, ErrorCode::kInvalidModel, "{}: K must hold one value",
                 node.describe());
    k = kv[0];
  }
  TANDEM_CHECK(k >= 0 && k <= x.shape[axis], ErrorCode::kInvalidArgument,
               "{}: k {} is out of range for axis {} of {}", node.describe(), k, axis,
               shape_str(x.shape));
  Shape out = x.shape;
  out[axis] = k;
  return {{x.dtype, out}, {DataType::kInt64, out}};
}

// Einsum: labels are letters; the dims an ellipsis stands for get labels 52, 53, ... counted
// from the left of the (right-aligned, broadcast) ellipsis dims.

}  // namespace

EinsumEquation parse_einsum_equation(const Node& node, size_t num_inputs) {
  EinsumEquation eq;
  for (char c : node.attr_string("equation"))
    if (c != ' ') eq.text += c;
  size_t arrow = eq.text.find("->");
  std::string lhs = eq.text.substr(0, arrow);
  for (size_t p = 0;;) {
    size_t c = lhs.find(',', p);
    eq.terms.push_back(lhs.substr(p, c == std::string::npos ? std::string::npos : c - p));
    if (c == std::string::npos) break;
    p = c + 1;
  }
  eq.has_output = arrow != std::string::npos;
  if (eq.has_output) eq.output = eq.text.substr(arrow + 2);
  TANDEM_CHECK(eq.terms.size() == num_inputs, ErrorCode::kInvalidModel,
               "{}: equation '{}' has {} operands, the node {} inputs", node.describe(), eq.text,
               eq.terms.size(), num_inputs);
  return eq;
}

int einsum_letter(char c) {
  if (c >= 'a' && c <= 'z') return c - 'a';
  if (c >= 'A' && c <= 'Z') return c - 'A' + 26;
  return -1;
}

namespace {

std::vector<TensorType> infer_einsum(const InferContext& ctx) {
  const Node& node = ctx.node;
  const EinsumEquation eq = parse_einsum_equation(node, ctx.num_inputs());
  const std::vector<std::string>& terms = eq.terms;
  std::map<int, int64_t> size;
  std::map<int, int> uses;
  Shape ell;  // broadcast ellipsis dims
  for (size_t i = 0; i < terms.size(); ++i) {
    const Shape& s = ctx.input(i).shape;
    const std::string& t = terms[i];
    size_t e = t.find("...");
    int64_t letters = static_cast<int64_t>(t.size()) - (e == std::string::npos ? 0 : 3);
    int64_t ne = static_cast<int64_t>(s.size()) - letters;
    TANDEM_CHECK(ne >= 0 && (ne == 0 || e != std::string::npos), ErrorCode::kInvalidArgument,
                 "{}: operand {} '{}' does not match its shape {}", node.describe(), i, t,
                 shape_str(s));
    size_t d = 0;
    for (size_t p = 0; p < t.size(); ++p) {
      if (p == e) {
        ell = broadcast_shapes(ell, Shape(s.begin() + d, s.begin() + d + ne), node);
        d += ne;
        p += 2;
        continue;
      }
      int l = einsum_letter(t[p]);
      TANDEM_CHECK(l >= 0, ErrorCode::kInvalidModel, "{}: bad character '{}' in '{}'",
                   node.describe(), t[p], eq.text);
      auto it = size.find(l);
      TANDEM_CHECK(it == size.end() || it->second == s[d], ErrorCode::kInvalidArgument,
                   "{}: label '{}' has sizes {} and {}", node.describe(), t[p],
                   it == size.end() ? 0 : it->second, s[d]);
      size[l] = s[d++];
      uses[l]++;
    }
  }
  Shape out;
  if (eq.has_output) {
    const std::string& rhs = eq.output;
    for (size_t p = 0; p < rhs.size(); ++p) {
      if (rhs.compare(p, 3, "...") == 0) {
        out.insert(out.end(), ell.begin(), ell.end());
        p += 2;
        continue;
      }
      int l = einsum_letter(rhs[p]);
      TANDEM_CHECK(size.count(l), ErrorCode::kInvalidModel,
                   "{}: output label '{}' is not in any operand", node.describe(), rhs[p]);
      out.push_back(size[l]);
    }
  } else {
    // Implicit output: the ellipsis dims, then the labels used once, in alphabetical order.
    out = ell;
    for (auto& [l, n] : uses)
      if (n == 1) out.push_back(size[l]);
  }
  return {{ctx.input(0).dtype, out}};
}

}  // namespace

void register_tensor_schemas(SchemaRegistry& r) {
  r.add({"Transpose", 1, 1, with_attrs(infer_transpose), ""});
  r.add({"Concat", 1, -1, with_attrs(infer_concat), ""});
  r.add({"Split", 1, 2, with_attrs(infer_split), ""});
  r.add({"Slice", 1, 5, infer_slice, ""});
  r.add({"Gather", 2, 2, with_attrs(infer_gather), ""});
  r.add({"GatherElements", 2, 2, with_attrs(infer_gather_elements), ""});
  r.add({"GatherND", 2, 2, with_attrs(infer_gather_nd), ""});
  r.add({"ScatterElements", 3, 3, with_attrs(infer_scatter_elements), ""});
  r.add({"Scatter", 3, 3, with_attrs(infer_scatter_elements), ""});
  r.add({"ScatterND", 3, 3, with_attrs(infer_scatter_nd), ""});
  r.add({"Tile", 2, 2, infer_tile, ""});
  r.add({"Pad", 1, 4, with_attrs(infer_pad), ""});
  r.add({"DepthToSpace", 1, 1, with_attrs(infer_depth_to_space), ""});
  r.add({"SpaceToDepth", 1, 1, with_attrs(infer_space_to_depth), ""});
  r.add({"OneHot", 3, 3, with_attrs(infer_one_hot), ""});
  r.add({"NonZero", 1, 1, infer_non_zero, ""});
  r.add({"Trilu", 1, 2, infer_trilu, ""});
  r.add({"CumSum", 2, 2, infer_cum_sum, ""});
  r.add({"TopK", 1, 2, with_attrs(infer_top_k), ""});
  r.add({"Einsum", 1, -1, infer_einsum, ""});
}

}  // namespace tandem

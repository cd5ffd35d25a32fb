// Schemas of the shape family: Reshape, Flatten, Squeeze, Unsqueeze, Shape, Size, Identity,
// ConstantOfShape, Range, Expand, EyeLike, Constant.
#include "ops/shape.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/checked.h"
#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

ShapeOpAttrs ShapeOpAttrs::parse(const Node& node) {
  ShapeOpAttrs a;
  const std::string& op = node.op_type;
  if (op == "Shape" && node.opset >= 15) {
    a.start = node.attr_int_or("start", 0);
    if (node.has_attr("end")) a.end = node.attr_int("end");
  } else if (op == "EyeLike") {
    // The kernel adds k to a row index. An offset beyond +-2^62 selects nothing in any tensor
    // that fits in memory, as the file's value would: clamping keeps the sum from wrapping.
    a.k = std::clamp<int64_t>(node.attr_int_or("k", 0), -(int64_t{1} << 62), int64_t{1} << 62);
    if (node.has_attr("dtype")) a.dtype = static_cast<DataType>(node.attr_int("dtype"));
  } else if (op == "ConstantOfShape") {
    if (node.has_attr("value")) {
      a.value = node.attr_tensor("value");
      TANDEM_CHECK(a.value.numel() == 1, ErrorCode::kInvalidModel,
                   "{}: value must hold one element, has shape {}", node.describe(),
                   shape_str(a.value.shape()));
    }
  } else if (op == "Constant") {
    if (node.has_attr("value")) {
      a.value = node.attr_tensor("value");
    } else if (node.has_attr("value_float")) {
      a.value = Tensor::from_vector(DataType::kFloat32, {},
                                    std::vector<float>{node.attr_float("value_float")});
    } else if (node.has_attr("value_int")) {
      a.value = Tensor::from_vector(DataType::kInt64, {},
                                    std::vector<int64_t>{node.attr_int("value_int")});
    } else if (node.has_attr("value_floats")) {
      const std::vector<float> v = node.attr_floats_or("value_floats", {});
      a.value = Tensor::from_vector(DataType::kFloat32, {static_cast<int64_t>(v.size())}, v);
    } else if (node.has_attr("value_ints")) {
      const std::vector<int64_t> v = node.attr_ints("value_ints");
      a.value = Tensor::from_vector(DataType::kInt64, {static_cast<int64_t>(v.size())}, v);
    } else {
      raise(ErrorCode::kUnsupported,
            "{}: needs one of the attributes value, value_float(s), value_int(s) (sparse and "
            "string constants are not supported)",
            node.describe());
    }
  }
  return a;
}

std::pair<int64_t, int64_t> ShapeOpAttrs::shape_range(int64_t rank) const {
  int64_t first = start < 0 ? start + rank : start;
  int64_t last = end.value_or(rank);
  if (last < 0) last += rank;
  return {std::clamp<int64_t>(first, 0, rank), std::clamp<int64_t>(last, 0, rank)};
}

namespace {

std::vector<int64_t> int64s_of(const InferContext& ctx, size_t i) {
  return tensor_to_int64s(ctx.require_value(i), ctx.node);
}

std::vector<TensorType> infer_reshape(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  std::vector<int64_t> req = int64s_of(ctx, 1);
  bool allowzero = node.opset >= 14 && node.attr_int_or("allowzero", 0) != 0;
  Shape out(req.size());
  int64_t infer_at = -1, known = 1;
  for (size_t i = 0; i < req.size(); ++i) {
    if (req[i] == -1) {
      TANDEM_CHECK(infer_at < 0, ErrorCode::kInvalidModel,
                   "{}: requested shape {} has more than one -1", node.describe(),
                   fmt::format("{}", req));
      infer_at = static_cast<int64_t>(i);
      continue;
    }
    if (req[i] == 0 && !allowzero) {
      // 0 copies the input's dim at the same position.
      TANDEM_CHECK(i < x.shape.size(), ErrorCode::kInvalidArgument,
                   "{}: requested shape {} copies dim {} (0) but the input {} has rank {}",
                   node.describe(), fmt::format("{}", req), i, shape_str(x.shape), x.shape.size());
      out[i] = x.shape[i];
    } else {
      TANDEM_CHECK(req[i] >= 0, ErrorCode::kInvalidModel,
                   "{}: requested shape {} has an invalid dim {}", node.describe(),
                   fmt::format("{}", req), req[i]);
      out[i] = req[i];
    }
    known = checked_mul(known, out[i], node.describe());
  }
  int64_t numel = shape_numel(x.shape);
  if (infer_at >= 0) {
    TANDEM_CHECK(known != 0 && numel % known == 0, ErrorCode::kInvalidArgument,
                 "{}: cannot reshape input of shape {} ({} elements) to {}", node.describe(),
                 shape_str(x.shape), numel, fmt::format("{}", req));
    out[infer_at] = numel / known;
  }
  TANDEM_CHECK(shape_numel(out) == numel, ErrorCode::kInvalidArgument,
               "{}: cannot reshape input of shape {} ({} elements) to {} ({} elements)",
               node.describe(), shape_str(x.shape), numel, fmt::format("{}", req),
               shape_numel(out));
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_flatten(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  int64_t rank = static_cast<int64_t>(x.shape.size());
  int64_t axis = node.attr_int_or("axis", 1);
  if (axis < 0) axis += rank;
  TANDEM_CHECK(axis >= 0 && axis <= rank, ErrorCode::kInvalidModel,
               "{}: axis {} is out of range for rank {}", node.describe(),
               node.attr_int_or("axis", 1), rank);
  int64_t a = 1, b = 1;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t& side = d < axis ? a : b;
    side = checked_mul(side, x.shape[d], node.describe());
  }
  return {{x.dtype, {a, b}}};
}

// Squeeze/Unsqueeze axes: an attribute before opset 13, an (optional for Squeeze) input after.
// An empty list counts as none given (Squeeze then drops every dim of size 1).
std::vector<int64_t> squeeze_axes(const InferContext& ctx, bool* given) {
  std::vector<int64_t> axes;
  if (ctx.node.opset >= 13) {
    if (ctx.has_input(1)) axes = int64s_of(ctx, 1);
  } else {
    axes = ctx.node.attr_ints_or("axes", {});
  }
  *given = !axes.empty();
  return axes;
}

std::vector<TensorType> infer_squeeze(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  int64_t rank = static_cast<int64_t>(x.shape.size());
  bool given = false;
  std::vector<int64_t> axes = squeeze_axes(ctx, &given);
  std::set<int64_t> drop;
  for (int64_t a : axes) {
    int64_t d = normalize_axis(a, rank, node);
    TANDEM_CHECK(x.shape[d] == 1, ErrorCode::kInvalidArgument,
                 "{}: cannot squeeze axis {} of shape {}: its size is not 1", node.describe(), a,
                 shape_str(x.shape));
    drop.insert(d);
  }
  Shape out;
  for (int64_t d = 0; d < rank; ++d) {
    bool squeeze = given ? drop.count(d) != 0 : x.shape[d] == 1;
    if (!squeeze) out.push_back(x.shape[d]);
  }
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_unsqueeze(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  bool given = false;
  std::vector<int64_t> axes = squeeze_axes(ctx, &given);
  TANDEM_CHECK(given, ErrorCode::kInvalidModel, "{}: axes are required", node.describe());
  int64_t out_rank = static_cast<int64_t>(x.shape.size() + axes.size());
  std::set<int64_t> ins;
  for (int64_t a : axes) {
    int64_t d = normalize_axis(a, out_rank, node);
    TANDEM_CHECK(ins.insert(d).second, ErrorCode::kInvalidModel, "{}: axis {} is repeated",
                 node.describe(), a);
  }
  Shape out;
  size_t src = 0;
  for (int64_t d = 0; d < out_rank; ++d) out.push_back(ins.count(d) ? 1 : x.shape[src++]);
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_shape(const InferContext& ctx, const ShapeOpAttrs& a) {
  const auto [start, end] = a.shape_range(static_cast<int64_t>(ctx.input(0).shape.size()));
  return {{DataType::kInt64, {std::max<int64_t>(end - start, 0)}}};
}

std::vector<TensorType> infer_size(const InferContext& ctx) {
  ctx.input(0);
  return {{DataType::kInt64, {}}};
}

std::vector<TensorType> infer_identity(const InferContext& ctx) {
  return {ctx.input(0)};
}

std::vector<TensorType> infer_constant_of_shape(const InferContext& ctx, const ShapeOpAttrs& a) {
  const Node& node = ctx.node;
  std::vector<int64_t> dims = int64s_of(ctx, 0);
  for (int64_t d : dims)
    TANDEM_CHECK(d >= 0, ErrorCode::kInvalidArgument, "{}: negative dim in shape {}",
                 node.describe(), fmt::format("{}", dims));
  const DataType dt = a.value.defined() ? a.value.dtype() : DataType::kFloat32;
  return {{dt, Shape(dims.begin(), dims.end())}};
}

std::vector<TensorType> infer_range(const InferContext& ctx) {
  const Node& node = ctx.node;
  DataType dt = ctx.input(0).dtype;
  for (size_t i = 1; i < 3; ++i)
    TANDEM_CHECK(ctx.input(i).dtype == dt, ErrorCode::kInvalidModel,
                 "{}: start, limit and delta must have the same dtype", node.describe());
  int64_t n = 0;
  if (dt == DataType::kFloat32 || dt == DataType::kFloat64) {
    double start = tensor_scalar_as_double(ctx.require_value(0), node);
    double limit = tensor_scalar_as_double(ctx.require_value(1), node);
    double delta = tensor_scalar_as_double(ctx.require_value(2), node);
    TANDEM_CHECK(delta != 0, ErrorCode::kInvalidArgument, "{}: delta is 0", node.describe());
    double count = std::ceil((limit - start) / delta);
    // NaN, infinite or beyond int64: a cast would be undefined; the size cap refuses the rest.
    TANDEM_CHECK(!std::isnan(count) && count < 9.2e18, ErrorCode::kInvalidArgument,
                 "{}: start {}, limit {} and delta {} give {} elements", node.describe(), start,
                 limit, delta, count);
    n = static_cast<int64_t>(std::max(count, 0.0));
  } else {
    TANDEM_CHECK(dt == DataType::kInt16 || dt == DataType::kInt32 || dt == DataType::kInt64,
                 ErrorCode::kUnsupported, "{}: dtype {} is not supported", node.describe(),
                 dtype_name(dt));
    auto as_int = [&](size_t i) -> int64_t {
      const Tensor& t = ctx.require_value(i);
      TANDEM_CHECK(t.numel() == 1, ErrorCode::kInvalidModel,
                   "{}: input {} must be a scalar, has shape {}", node.describe(), i,
                   shape_str(t.shape()));
      if (t.dtype() == DataType::kInt16) return *t.data<int16_t>();
      return tensor_to_int64s(t, node)[0];
    };
    int64_t start = as_int(0), limit = as_int(1), delta = as_int(2);
    TANDEM_CHECK(delta != 0, ErrorCode::kInvalidArgument, "{}: delta is 0", node.describe());
    int64_t diff = 0;
    TANDEM_CHECK(
        !__builtin_sub_overflow(limit, start, &diff) && !(diff == INT64_MIN && delta == -1),
        ErrorCode::kInvalidArgument, "{}: start {}, limit {} and delta {} give too many elements",
        node.describe(), start, limit, delta);
    int64_t q = diff / delta;
    if (diff % delta != 0 && ((diff < 0) == (delta < 0))) ++q;  // round the quotient up
    n = std::max<int64_t>(q, 0);
  }
  return {{dt, {n}}};
}

std::vector<TensorType> infer_expand(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  std::vector<int64_t> dims = int64s_of(ctx, 1);
  // Bidirectional: the requested shape may itself be broadcast (dims of 1 keep the input's).
  return {{x.dtype, broadcast_shapes(x.shape, Shape(dims.begin(), dims.end()), ctx.node)}};
}

std::vector<TensorType> infer_eye_like(const InferContext& ctx, const ShapeOpAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(x.shape.size() == 2, ErrorCode::kInvalidModel, "{}: input must be 2-D, got {}",
               node.describe(), shape_str(x.shape));
  DataType dt = a.dtype.value_or(x.dtype);
  return {{dt, x.shape}};
}

std::vector<TensorType> infer_constant(const InferContext&, const ShapeOpAttrs& a) {
  return {{a.value.dtype(), a.value.shape()}};
}

}  // namespace

void register_shape_schemas(SchemaRegistry& r) {
  r.add({"Reshape", 2, 2, infer_reshape, ""});
  r.add({"Flatten", 1, 1, infer_flatten, ""});
  r.add({"Squeeze", 1, 2, infer_squeeze, ""});
  r.add({"Unsqueeze", 1, 2, infer_unsqueeze, ""});
  r.add({"Shape", 1, 1, with_attrs(infer_shape), ""});
  r.add({"Size", 1, 1, infer_size, ""});
  r.add({"Identity", 1, 1, infer_identity, ""});
  r.add({"ConstantOfShape", 1, 1, with_attrs(infer_constant_of_shape), ""});
  r.add({"Range", 3, 3, infer_range, ""});
  r.add({"Expand", 2, 2, infer_expand, ""});
  r.add({"EyeLike", 1, 1, with_attrs(infer_eye_like), ""});
  r.add({"Constant", 0, 0, with_attrs(infer_constant), ""});
}

}  // namespace tandem

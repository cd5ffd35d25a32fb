// Schemas of the selection family: Compress, Unique, ReverseSequence, and Det.
// Compress's and Unique's output shapes depend on input values (require_value).
#include "ops/selection.h"

#include <cstring>
#include <set>
#include <string>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

SelectionAttrs SelectionAttrs::parse(const Node& node) {
  SelectionAttrs a;
  if (node.has_attr("axis")) a.axis = node.attr_int("axis");
  a.sorted = node.attr_int_or("sorted", 1) != 0;
  a.batch_axis = node.attr_int_or("batch_axis", 1);
  a.time_axis = node.attr_int_or("time_axis", 0);
  return a;
}

namespace {

std::vector<TensorType> infer_compress(const InferContext& ctx, const SelectionAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  TANDEM_CHECK(ctx.input(1).dtype == DataType::kBool && ctx.input(1).shape.size() == 1,
               ErrorCode::kInvalidModel, "{}: condition must be a 1-D bool tensor, got {} {}",
               node.describe(), dtype_name(ctx.input(1).dtype), shape_str(ctx.input(1).shape));
  const Tensor& cond = ctx.require_value(1);
  int64_t kept = 0;
  for (int64_t i = 0; i < cond.numel(); ++i) kept += cond.data<bool>()[i] ? 1 : 0;
  if (!a.axis) return {{x.dtype, {kept}}};
  int64_t axis = normalize_axis(*a.axis, static_cast<int64_t>(x.shape.size()), node);
  TANDEM_CHECK(cond.numel() <= x.shape[axis], ErrorCode::kInvalidArgument,
               "{}: condition has {} elements but axis {} has size {}", node.describe(),
               cond.numel(), axis, x.shape[axis]);
  Shape out = x.shape;
  out[axis] = kept;
  return {{x.dtype, out}};
}

// Unique's outputs need the number of distinct slices along the axis (of elements when no axis):
// counted here by their bytes; the kernel checks it finds the same number.
std::vector<TensorType> infer_unique(const InferContext& ctx, const SelectionAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& xt = ctx.input(0);
  TANDEM_CHECK(dtype_size(xt.dtype) > 0, ErrorCode::kUnsupported, "{}: dtype {} is not supported",
               node.describe(), dtype_name(xt.dtype));
  const Tensor& x = ctx.require_value(0);
  const int64_t rank = static_cast<int64_t>(x.rank());
  const bool has_axis = a.axis.has_value();
  const int64_t axis = has_axis ? normalize_axis(*a.axis, rank, node) : 0;
  int64_t outer = 1, n = x.numel(), inner = 1;
  if (has_axis) {
    n = x.dim(static_cast<size_t>(axis));
    for (int64_t d = 0; d < axis; ++d) outer *= x.dim(static_cast<size_t>(d));
    for (int64_t d = axis + 1; d < rank; ++d) inner *= x.dim(static_cast<size_t>(d));
  }
  const size_t es = dtype_size(x.dtype());
  const char* p = static_cast<const char*>(x.raw());
  std::set<std::string> seen;
  for (int64_t i = 0; i < n; ++i) {
    std::string key;
    for (int64_t o = 0; o < outer; ++o)
      key.append(p + ((o * n + i) * inner) * static_cast<int64_t>(es),
                 static_cast<size_t>(inner) * es);
    seen.insert(key);
  }
  const int64_t u = static_cast<int64_t>(seen.size());
  Shape y = {u};
  if (has_axis) {
    y = x.shape();
    y[static_cast<size_t>(axis)] = u;
  }
  return {
      {x.dtype(), y}, {DataType::kInt64, {u}}, {DataType::kInt64, {n}}, {DataType::kInt64, {u}}};
}

std::vector<TensorType> infer_reverse_sequence(const InferContext& ctx, const SelectionAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  TANDEM_CHECK(rank >= 2, ErrorCode::kInvalidArgument, "{}: input must have rank >= 2, got {}",
               node.describe(), shape_str(x.shape));
  int64_t batch_axis = normalize_axis(a.batch_axis, rank, node);
  int64_t time_axis = normalize_axis(a.time_axis, rank, node);
  TANDEM_CHECK(batch_axis != time_axis && batch_axis < 2 && time_axis < 2, ErrorCode::kInvalidModel,
               "{}: batch_axis {} and time_axis {} must be 0 and 1", node.describe(), batch_axis,
               time_axis);
  TANDEM_CHECK(ctx.input(1).shape == Shape{x.shape[batch_axis]}, ErrorCode::kInvalidArgument,
               "{}: sequence_lens has shape {}, expected [{}]", node.describe(),
               shape_str(ctx.input(1).shape), x.shape[batch_axis]);
  return {{x.dtype, x.shape}};
}

std::vector<TensorType> infer_det(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.float_input(0);
  const size_t r = x.shape.size();
  TANDEM_CHECK(r >= 2 && x.shape[r - 1] == x.shape[r - 2], ErrorCode::kInvalidArgument,
               "{}: input shape {} must end with a square matrix", node.describe(),
               shape_str(x.shape));
  return {{x.dtype, Shape(x.shape.begin(), x.shape.end() - 2)}};
}

}  // namespace

void register_selection_schemas(SchemaRegistry& r) {
  r.add({"Compress", 2, 2, with_attrs(infer_compress), ""});
  r.add({"Unique", 1, 1, with_attrs(infer_unique), ""});
  r.add({"ReverseSequence", 2, 2, with_attrs(infer_reverse_sequence), ""});
  r.add({"Det", 1, 1, infer_det, ""});
}

}  // namespace tandem

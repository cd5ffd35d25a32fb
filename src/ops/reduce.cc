// Schemas of the reduce family: Reduce* (axes as attribute or, from ReduceSum-13 / all at
// opset 18, as an optional second input) and ArgMax/ArgMin.
#include "ops/reduce.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

ReduceAttrs ReduceAttrs::parse(const Node& node) {
  ReduceAttrs a;
  a.keepdims = node.attr_int_or("keepdims", 1) != 0;
  if (node.op_type == "ArgMax" || node.op_type == "ArgMin") {
    a.axis = node.attr_int_or("axis", 0);
    a.select_last_index = node.attr_int_or("select_last_index", 0) != 0;
    return a;
  }
  a.axes_from_input = node.opset >= 18 || (node.op_type == "ReduceSum" && node.opset >= 13);
  if (a.axes_from_input)
    a.noop_with_empty_axes = node.attr_int_or("noop_with_empty_axes", 0) != 0;
  else
    a.axes = node.attr_ints_or("axes", {});
  return a;
}

ReduceAttrs::Reduced ReduceAttrs::reduced(int64_t rank, const Tensor* axes_input,
                                          const Node& node) const {
  std::vector<int64_t> named = axes;
  if (axes_from_input && axes_input) named = tensor_to_int64s(*axes_input, node);
  Reduced r;
  if (named.empty() && axes_from_input && noop_with_empty_axes) {
    r.noop = true;
    return r;
  }
  for (int64_t a : named) r.axes.insert(normalize_axis(a, rank, node));
  if (named.empty())
    for (int64_t d = 0; d < rank; ++d) r.axes.insert(d);
  return r;
}

namespace {

const char* const kReduceOps[] = {"ReduceMean",      "ReduceSum",      "ReduceMax", "ReduceMin",
                                  "ReduceProd",      "ReduceL1",       "ReduceL2",  "ReduceLogSum",
                                  "ReduceLogSumExp", "ReduceSumSquare"};

std::vector<TensorType> infer_reduce(const InferContext& ctx, const ReduceAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  TANDEM_CHECK(a.axes_from_input || !ctx.has_input(1), ErrorCode::kInvalidModel,
               "{}: axes is an attribute at opset {}, not an input", node.describe(), node.opset);
  const ReduceAttrs::Reduced r =
      a.reduced(rank, ctx.has_input(1) ? &ctx.require_value(1) : nullptr, node);
  if (r.noop) return {{x.dtype, x.shape}};
  Shape out;
  for (int64_t d = 0; d < rank; ++d) {
    if (!r.axes.count(d))
      out.push_back(x.shape[d]);
    else if (a.keepdims)
      out.push_back(1);
  }
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_arg(const InferContext& ctx, const ReduceAttrs& a) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  int64_t rank = static_cast<int64_t>(x.shape.size());
  int64_t axis = normalize_axis(a.axis, rank, node);
  TANDEM_CHECK(x.shape[axis] > 0, ErrorCode::kInvalidArgument,
               "{}: cannot take {} over an empty axis (input shape {})", node.describe(),
               node.op_type, shape_str(x.shape));
  Shape out = x.shape;
  if (a.keepdims)
    out[axis] = 1;
  else
    out.erase(out.begin() + axis);
  return {{DataType::kInt64, out}};
}

}  // namespace

void register_reduce_schemas(SchemaRegistry& r) {
  for (const char* op : kReduceOps) r.add({op, 1, 2, with_attrs(infer_reduce), ""});
  r.add({"ArgMax", 1, 1, with_attrs(infer_arg), ""});
  r.add({"ArgMin", 1, 1, with_attrs(infer_arg), ""});
}

}  // namespace tandem

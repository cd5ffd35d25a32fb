// Schemas of the reduce family: Reduce* (axes as attribute or, from ReduceSum-13 / all at
// opset 18, as an optional second input) and ArgMax/ArgMin.
#include <algorithm>
#include <set>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

const char* const kReduceOps[] = {"ReduceMean",      "ReduceSum",      "ReduceMax", "ReduceMin",
                                  "ReduceProd",      "ReduceL1",       "ReduceL2",  "ReduceLogSum",
                                  "ReduceLogSumExp", "ReduceSumSquare"};

bool axes_from_input(const Node& node) {
  return node.opset >= 18 || (node.op_type == "ReduceSum" && node.opset >= 13);
}

std::vector<TensorType> infer_reduce(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  int64_t rank = static_cast<int64_t>(x.shape.size());
  bool keepdims = node.attr_int_or("keepdims", 1) != 0;
  std::vector<int64_t> axes;
  bool noop = false;
  if (axes_from_input(node)) {
    if (ctx.has_input(1)) axes = tensor_to_int64s(ctx.require_value(1), node);
    noop = axes.empty() && node.attr_int_or("noop_with_empty_axes", 0) != 0;
  } else {
    TANDEM_CHECK(!ctx.has_input(1), ErrorCode::kInvalidModel,
                 "{}: axes is an attribute at opset {}, not an input", node.describe(), node.opset);
    axes = node.attr_ints_or("axes", {});
  }
  if (noop) return {{x.dtype, x.shape}};
  std::set<int64_t> reduced;
  for (int64_t a : axes) reduced.insert(normalize_axis(a, rank, node));
  if (axes.empty())
    for (int64_t d = 0; d < rank; ++d) reduced.insert(d);
  Shape out;
  for (int64_t d = 0; d < rank; ++d) {
    if (!reduced.count(d))
      out.push_back(x.shape[d]);
    else if (keepdims)
      out.push_back(1);
  }
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_arg(const InferContext& ctx) {
  const Node& node = ctx.node;
  const TensorType& x = ctx.input(0);
  int64_t rank = static_cast<int64_t>(x.shape.size());
  int64_t axis = normalize_axis(node.attr_int_or("axis", 0), rank, node);
  TANDEM_CHECK(x.shape[axis] > 0, ErrorCode::kInvalidArgument,
               "{}: cannot take {} over an empty axis (input shape {})", node.describe(),
               node.op_type, shape_str(x.shape));
  Shape out = x.shape;
  if (node.attr_int_or("keepdims", 1) != 0)
    out[axis] = 1;
  else
    out.erase(out.begin() + axis);
  return {{DataType::kInt64, out}};
}

}  // namespace

void register_reduce_schemas(SchemaRegistry& r) {
  for (const char* op : kReduceOps) r.add({op, 1, 2, infer_reduce, ""});
  r.add({"ArgMax", 1, 1, infer_arg, ""});
  r.add({"ArgMin", 1, 1, infer_arg, ""});
}

}  // namespace tandem

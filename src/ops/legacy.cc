// Opsets 1 to 6 of the default domain. Most ops' versions before 7 differ from their later
// versions only by legacy attributes (consumed_inputs, ignored). Two legacy layouts are computed
// by viewing an operand under another shape (legacy_broadcast_shape, legacy_prelu_slope_shape,
// used by the elementwise and activation schemas and kernels). The ops whose early versions mean
// something else still get a guard here, wrapped around their regular schema: a node in such a
// form is refused with a clear error instead of being computed differently.
#include "ops/legacy.h"

#include <string>

#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

// Returns why `node` (opset < 7) cannot run, or "" when its regular schema computes it right.
std::string legacy_problem(const Node& node) {
  const std::string& op = node.op_type;
  const int v = node.opset;
  // Binary ops before 7 (`broadcast`/`axis`) and PRelu's per-channel slope are computed through
  // legacy_broadcast_shape / legacy_prelu_slope_shape, not refused.
  if (op == "Concat" && v < 4 && !node.has_attr("axis")) return "Concat without axis (default 1)";
  if (op == "Cast" && v < 6) return "Cast with a string 'to' attribute";
  if (op == "BatchNormalization" && node.attr_int_or("is_test", 0) == 0)
    return "BatchNormalization in training mode (is_test = 0)";
  if ((op == "Pad" || op == "Split" || op == "LpPool" || op == "GlobalLpPool") && v < 2)
    return "attributes of version 1";
  if (op == "Reshape" && v < 5) return "the shape as an attribute";
  if (op == "Tile" && v < 6) return "tiles/axis inputs of version 1";
  if (op == "Upsample") return "Upsample version 1 attributes";
  return "";
}

}  // namespace

Shape legacy_broadcast_shape(const Node& node, const Shape& a, const Shape& b) {
  if (node.opset >= 7 || node.attr_int_or("broadcast", 0) == 0 || !node.has_attr("axis")) return b;
  const auto rank_a = static_cast<int64_t>(a.size());
  const auto rank_b = static_cast<int64_t>(b.size());
  // A scalar B (rank 0) broadcasts anywhere; the axis does not matter.
  if (rank_b == 0) return b;
  const int64_t axis = normalize_axis(node.attr_int_or("axis", rank_a - rank_b), rank_a, node);
  TANDEM_CHECK(axis + rank_b <= rank_a, ErrorCode::kInvalidModel,
               "{}: legacy broadcast of B {} into A {} at axis {} runs past A's rank",
               node.describe(), shape_str(b), shape_str(a), axis);
  Shape padded(static_cast<size_t>(axis), 1);
  padded.insert(padded.end(), b.begin(), b.end());
  padded.resize(a.size(), 1);
  for (size_t d = 0; d < a.size(); ++d) {
    TANDEM_CHECK(padded[d] == 1 || padded[d] == a[d], ErrorCode::kInvalidModel,
                 "{}: legacy broadcast of B {} into A {} at axis {}: dim {} of B is {}, A has {}",
                 node.describe(), shape_str(b), shape_str(a), axis, static_cast<int64_t>(d) - axis,
                 padded[d], a[d]);
  }
  return padded;
}

Shape legacy_prelu_slope_shape(const Node& node, const Shape& x, const Shape& slope) {
  if (node.opset >= 7 || slope.size() != 1 || x.size() < 2 || slope[0] <= 1 || slope[0] != x[1])
    return slope;
  Shape per_channel(x.size() - 1, 1);
  per_channel[0] = slope[0];
  return per_channel;
}

void register_legacy_schemas(SchemaRegistry& r) {
  for (const std::string& name : r.op_types()) {
    if (name.find('.') != std::string::npos) continue;  // other domains
    OpSchema schema = *r.find("", name);
    InferFn regular = schema.infer;
    schema.infer = [regular](const InferContext& ctx) {
      const Node& node = ctx.node;
      if (node.opset < 7) {
        std::string problem = legacy_problem(node);
        TANDEM_CHECK(problem.empty(), ErrorCode::kUnsupported,
                     "{}: opset {} form is not supported: {}", node.describe(), node.opset,
                     problem);
      }
      return regular(ctx);
    };
    r.add(std::move(schema));
  }
}

}  // namespace tandem

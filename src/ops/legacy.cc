// Opsets 1 to 6 of the default domain. Most ops' versions before 7 differ from their later
// versions only by legacy attributes (consumed_inputs, ignored). The ops whose early versions
// mean something else get a guard here, wrapped around their regular schema: a node in such a
// form is refused with a clear error instead of being computed differently.
#include <string>

#include "core/error.h"
#include "ops/schema.h"

namespace tandem {

namespace {

// Returns why `node` (opset < 7) cannot run, or "" when its regular schema computes it right.
std::string legacy_problem(const Node& node) {
  const std::string& op = node.op_type;
  const int v = node.opset;
  // Binary ops before 7: no numpy broadcasting but `broadcast`/`axis`; without `axis` the
  // legacy broadcast (B matches a suffix of A) is numpy's, with `axis` it aligns B elsewhere.
  if ((op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow" || op == "And" ||
       op == "Or" || op == "Xor" || op == "Equal" || op == "Greater" || op == "Less") &&
      node.attr_int_or("broadcast", 0) != 0 && node.has_attr("axis")) {
    return "legacy broadcasting with an 'axis' attribute";
  }
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

#include "ops/schema.h"

#include "core/checked.h"
#include "core/error.h"

namespace tandem {

const TensorType& InferContext::input(size_t i) const {
  TANDEM_CHECK(has_input(i), ErrorCode::kInvalidModel, "{}: input {} is required but missing",
               node.describe(), i);
  return *inputs_[i];
}

const Tensor& InferContext::require_value(size_t i) const {
  input(i);
  if (!value(i)) throw ValueNotKnown{};
  return *value(i);
}

const TensorType& InferContext::float_input(size_t i, bool bfloat16) const {
  const TensorType& t = input(i);
  const bool ok = t.dtype == DataType::kFloat32 || t.dtype == DataType::kFloat64 ||
                  t.dtype == DataType::kFloat16 || (bfloat16 && t.dtype == DataType::kBFloat16);
  TANDEM_CHECK(ok, ErrorCode::kUnsupported,
               "{}: input {} has dtype {}, which is not supported (float types only)",
               node.describe(), i, dtype_name(t.dtype));
  return t;
}

void SchemaRegistry::add(OpSchema schema) {
  auto key = std::make_pair(schema.domain, schema.op_type);
  schemas_[key] = std::move(schema);
}

const OpSchema* SchemaRegistry::find(const std::string& domain, const std::string& op_type) const {
  std::string d = domain == "ai.onnx" ? "" : domain;
  auto it = schemas_.find({d, op_type});
  return it == schemas_.end() ? nullptr : &it->second;
}

std::vector<std::string> SchemaRegistry::op_types() const {
  std::vector<std::string> names;
  for (auto& [key, s] : schemas_)
    names.push_back(key.first.empty() ? key.second : key.first + "." + key.second);
  return names;
}

std::vector<std::pair<std::string, std::string>> SchemaRegistry::keys() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [key, s] : schemas_) out.push_back(key);
  return out;
}

const SchemaRegistry& schemas() {
  static const SchemaRegistry registry = [] {
    SchemaRegistry r;
    register_elementwise_schemas(r);
    register_activation_schemas(r);
    register_cast_schemas(r);
    register_conv_schemas(r);
    register_pool_schemas(r);
    register_normalization_schemas(r);
    register_resize_schemas(r);
    register_matmul_schemas(r);
    register_softmax_schemas(r);
    register_reduce_schemas(r);
    register_shape_schemas(r);
    register_tensor_schemas(r);
    register_signal_schemas(r);
    register_detection_schemas(r);
    register_selection_schemas(r);
    register_recurrent_schemas(r);
    register_quantize_schemas(r);
    register_dropout_schemas(r);
    register_loss_schemas(r);
    register_text_schemas(r);
    register_layout_schemas(r);
    register_legacy_schemas(r);  // last: wraps the schemas above
    return r;
  }();
  return registry;
}

std::vector<TensorType> infer_node(const Node& node, std::span<const TensorType* const> inputs,
                                   std::span<const Tensor* const> values) {
  const OpSchema* schema = schemas().find(node.domain, node.op_type);
  TANDEM_CHECK(schema, ErrorCode::kUnsupported, "unsupported op type '{}'{} (node '{}')",
               node.op_type, node.domain.empty() ? "" : " in domain '" + node.domain + "'",
               node.name);
  int n = 0;
  for (size_t i = 0; i < inputs.size(); ++i) n = inputs[i] ? static_cast<int>(i) + 1 : n;
  TANDEM_CHECK(
      static_cast<int>(node.inputs.size()) >= schema->min_inputs &&
          (schema->max_inputs < 0 || static_cast<int>(node.inputs.size()) <= schema->max_inputs),
      ErrorCode::kInvalidModel, "{}: has {} inputs, expected {} to {}", node.describe(),
      node.inputs.size(), schema->min_inputs,
      schema->max_inputs < 0 ? std::string("any") : std::to_string(schema->max_inputs));
  InferContext ctx(node, inputs, values);
  std::vector<TensorType> out;
  try {
    out = schema->infer(ctx);
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.find(node.name) == std::string::npos) msg = node.describe() + ": " + msg;
    throw Error(e.code(), msg);
  }
  TANDEM_CHECK(out.size() >= node.outputs.size(), ErrorCode::kInternal,
               "{}: shape inference gave {} outputs for {} declared", node.describe(), out.size(),
               node.outputs.size());
  out.resize(node.outputs.size());
  // Whatever an op's inference computed from attributes and input values (all untrusted), an
  // output shape with a negative dim or an element count that overflows is refused here, before
  // anything is allocated for it or any loop runs over it.
  for (size_t i = 0; i < out.size(); ++i)
    if (node.outputs[i])
      (void)checked_nbytes(out[i].dtype, out[i].shape,
                           fmt::format("{}: output '{}'", node.describe(), node.outputs[i]->name));
  return out;
}

}  // namespace tandem

// Op schemas: for every op type, how to infer its outputs' dtypes and shapes from its inputs.
// Backend-agnostic; one op family a file (ops/<family>.cc), all listed in ops/schema.cc.
#pragma once

#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem {

struct TensorType {
  DataType dtype = DataType::kUndefined;
  Shape shape;  // concrete: every dim >= 0
};

// Thrown by InferContext::require_value when an input's *value* is needed to compute the output
// shape but is only known at run time. The planner then infers that node at run time instead.
struct ValueNotKnown {};

class InferContext {
 public:
  InferContext(const Node& node, std::span<const TensorType* const> inputs,
               std::span<const Tensor* const> values)
      : node(node), inputs_(inputs), values_(values) {}

  const Node& node;
  size_t num_inputs() const { return inputs_.size(); }
  bool has_input(size_t i) const { return i < inputs_.size() && inputs_[i] != nullptr; }
  // Throws an invalid-model error naming the node when input i is absent.
  const TensorType& input(size_t i) const;
  // The input's value when known (a constant, or at run time), else nullptr.
  const Tensor* value(size_t i) const { return i < values_.size() ? values_[i] : nullptr; }
  // The input's value; throws ValueNotKnown when it is not known yet.
  const Tensor& require_value(size_t i) const;
  // Input i's type, after checking its dtype is float32, float64 or float16 (and bfloat16 when
  // `bfloat16` is true); throws a kUnsupported error naming the node and the input otherwise.
  const TensorType& float_input(size_t i, bool bfloat16 = false) const;

 private:
  std::span<const TensorType* const> inputs_;
  std::span<const Tensor* const> values_;
};

using InferFn = std::function<std::vector<TensorType>(const InferContext&)>;

// Shape inference for an op family with a typed attribute struct (ops/<family>.h): `Attrs::parse`
// reads and checks the node's attributes, and the same struct is what the family's kernels get
// (KernelRegistry::add with an Attrs parameter), so each attribute rule is written once.
template <class Attrs>
InferFn with_attrs(std::vector<TensorType> (*infer)(const InferContext&, const Attrs&)) {
  return [infer](const InferContext& ctx) { return infer(ctx, Attrs::parse(ctx.node)); };
}

// The domain of the ops Tandem's fusion passes create (FusedConv, Gelu, GroupNorm, Attention, ...).
// Models never contain them unless a user writes them; each has a schema and a reference kernel
// like any ONNX op.
inline constexpr const char* kFusedDomain = "com.tandem";

struct OpSchema {
  std::string op_type;
  int min_inputs = 0;
  int max_inputs = 0;  // -1: variadic
  InferFn infer;
  std::string domain;  // "" = default ONNX domain
};

class SchemaRegistry {
 public:
  void add(OpSchema schema);
  // nullptr when unknown.
  const OpSchema* find(const std::string& domain, const std::string& op_type) const;
  std::vector<std::string> op_types() const;
  // Every (domain, op type) with a schema; "" is the default ONNX domain.
  std::vector<std::pair<std::string, std::string>> keys() const;

 private:
  std::map<std::pair<std::string, std::string>, OpSchema> schemas_;
};

// Every schema Tandem knows (built once, on first use).
const SchemaRegistry& schemas();

// Checks input counts and runs the op's inference, turning any failure into an error that names
// the node. Throws ValueNotKnown through.
std::vector<TensorType> infer_node(const Node& node, std::span<const TensorType* const> inputs,
                                   std::span<const Tensor* const> values);

// ---- Family registration functions (one per ops/<family>.cc), called by schemas().
void register_elementwise_schemas(SchemaRegistry& r);    // unary/binary math, compare, logic, Where
void register_activation_schemas(SchemaRegistry& r);     // Relu, Sigmoid, Clip, ...
void register_cast_schemas(SchemaRegistry& r);           // Cast, CastLike
void register_conv_schemas(SchemaRegistry& r);           // Conv, ConvTranspose
void register_pool_schemas(SchemaRegistry& r);           // MaxPool, AveragePool, Global*
void register_normalization_schemas(SchemaRegistry& r);  // Batch/Instance/Layer/GroupNorm...
void register_resize_schemas(SchemaRegistry& r);         // Resize, Upsample
void register_matmul_schemas(SchemaRegistry& r);         // MatMul, Gemm
void register_softmax_schemas(SchemaRegistry& r);        // Softmax, LogSoftmax, Hardmax
void register_reduce_schemas(SchemaRegistry& r);         // Reduce*, ArgMax, ArgMin
void register_shape_schemas(SchemaRegistry& r);   // Reshape, Flatten, Squeeze, Unsqueeze, Shape,
                                                  // Size, Identity, ConstantOfShape, Range, Expand
void register_tensor_schemas(SchemaRegistry& r);  // Transpose, Concat, Split, Slice, Gather,
                                                  // Tile, Pad, ...
void register_signal_schemas(SchemaRegistry& r);
void register_detection_schemas(SchemaRegistry& r);
void register_selection_schemas(SchemaRegistry& r);
// Guards ops whose opset < 7 forms differ; called last.
void register_legacy_schemas(SchemaRegistry& r);
void register_recurrent_schemas(SchemaRegistry& r);
void register_quantize_schemas(SchemaRegistry& r);
void register_dropout_schemas(SchemaRegistry& r);
void register_loss_schemas(SchemaRegistry& r);
void register_text_schemas(SchemaRegistry& r);    // TfIdfVectorizer
void register_layout_schemas(SchemaRegistry& r);  // ToChannelsLast/First, channels-last pools
}  // namespace tandem

// Tandem's own graph IR: a Graph owns Values (edges) and Nodes (ops). The ONNX loader builds it,
// passes rewrite it, the session plans and runs it. Nodes are kept in topological order.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/limits.h"
#include "tandem/tensor.h"

namespace tandem {

struct Node;

// One more layout of a constant's bytes, made ahead of time for the kernels that read it (a
// .tandem file's prepacked weights). `key` is the backend's exact description of the layout
// (backends/cpu/dnnl_util.h, layout_key): a kernel uses an entry only when the key and the size
// are those of the layout it would make itself, so a file made on another CPU is still correct,
// only slower to plan.
struct PrepackedLayout {
  std::string key;
  const void* data = nullptr;
  size_t bytes = 0;
  std::shared_ptr<const void> keeper;  // keeps `data` alive (the file's mapping)
};

// A value flowing between nodes: a graph input, a constant (initializer / folded) or a node
// output. shape uses -1 for a dimension not known yet; `shape_known` is false when even the rank
// is unknown.
struct Value {
  std::string name;
  DataType dtype = DataType::kUndefined;
  Shape shape;
  bool shape_known = false;
  std::vector<std::string> dim_names;  // symbolic names from the model, when given

  std::optional<Tensor> constant;          // set for initializers and folded values
  std::vector<PrepackedLayout> prepacked;  // other layouts of `constant` (from a .tandem file)
  Node* producer = nullptr;
  std::vector<Node*> consumers;  // one entry per use (a node using it twice appears twice)
  bool is_graph_input = false;
  bool is_graph_output = false;

  bool is_constant() const { return constant.has_value(); }
};

struct Attribute {
  enum class Kind { kFloat, kInt, kString, kTensor, kFloats, kInts, kStrings, kGraph, kOther };
  Kind kind = Kind::kOther;
  float f = 0;
  int64_t i = 0;
  std::string s;
  Tensor t;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
};

struct Node {
  std::string name;             // may be empty in the file; the loader gives every node a name
  std::string op_type;          // "Conv"
  std::string domain;           // "" for the default ONNX domain
  int opset = 0;                // the model's opset import for `domain`
  std::vector<Value*> inputs;   // nullptr marks an omitted optional input
  std::vector<Value*> outputs;  // nullptr marks an omitted optional output
  std::map<std::string, Attribute> attrs;

  // Attribute access. The *_or forms return the default when the attribute is absent; the
  // plain forms throw a tandem::Error naming the node when it is absent. All throw when the
  // attribute has another kind.
  bool has_attr(const std::string& key) const { return attrs.count(key) != 0; }
  int64_t attr_int(const std::string& key) const;
  int64_t attr_int_or(const std::string& key, int64_t dflt) const;
  float attr_float(const std::string& key) const;
  float attr_float_or(const std::string& key, float dflt) const;
  std::string attr_string(const std::string& key) const;
  std::string attr_string_or(const std::string& key, const std::string& dflt) const;
  std::vector<int64_t> attr_ints(const std::string& key) const;
  std::vector<int64_t> attr_ints_or(const std::string& key, std::vector<int64_t> dflt) const;
  std::vector<float> attr_floats_or(const std::string& key, std::vector<float> dflt) const;
  std::vector<std::string> attr_strings_or(const std::string& key,
                                           std::vector<std::string> dflt) const;
  const Tensor& attr_tensor(const std::string& key) const;

  // Input i when present (inputs.size() > i and not omitted).
  bool has_input(size_t i) const { return i < inputs.size() && inputs[i] != nullptr; }
  // "Conv 'conv1'" — for error messages.
  std::string describe() const;
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Creates a value with a unique name (a suffix is added if `name` is taken or empty).
  Value* add_value(const std::string& name);
  Value* find_value(const std::string& name) const;
  // Appends a node; callers wire inputs/outputs through connect().
  Node* add_node(const std::string& op_type, const std::string& name,
                 const std::vector<Value*>& inputs, const std::vector<Value*>& outputs);
  // Removes a node (its outputs lose their producer; its inputs lose this consumer).
  void remove_node(Node* node);
  // Redirects every use of `from` (node inputs and graph outputs) to `to`.
  void replace_all_uses(Value* from, Value* to);
  // Drops values that nothing references (no producer, no consumer, not an input/output).
  void remove_unused_values();
  // Re-sorts nodes topologically; throws if the graph has a cycle or a use before definition.
  void topological_sort();

  std::vector<std::unique_ptr<Node>>& nodes() { return nodes_; }
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  const std::vector<std::unique_ptr<Value>>& values() const { return values_; }

  std::vector<Value*> inputs;  // real inputs (declared inputs minus initializers)
  std::vector<Value*> outputs;
  std::map<std::string, int64_t> opset_imports;  // domain -> version
  std::string name;
  // Caps the loader applied; passes that create tensors (constant folding) keep to them.
  SizeLimits limits;
  // Some weights came from external data files (their bytes are not in the .onnx file itself:
  // the conversion cache, keyed by those bytes, does not keep such models).
  bool uses_external_data = false;

 private:
  std::string unique_name(const std::string& base);

  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::unique_ptr<Value>> values_;
  std::map<std::string, Value*> by_name_;
  int name_counter_ = 0;
};

}  // namespace tandem

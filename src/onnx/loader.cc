#include "onnx/loader.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "onnx/safe_file.h"
#include "onnx/tensor_proto.h"

namespace tandem {

namespace {

onnx::ModelProto parse_model_bytes(const void* data, size_t size, const std::string& what) {
  TANDEM_CHECK(size <= static_cast<size_t>(INT32_MAX), ErrorCode::kInvalidModel,
               "{} is {} bytes, over protobuf's 2 GB limit (larger models keep their weights in "
               "external data files)",
               what, size);
  google::protobuf::io::CodedInputStream coded(static_cast<const uint8_t*>(data),
                                               static_cast<int>(size));
  // Protobuf refuses messages over 64 MB by default; an ONNX file may be up to 2 GB (larger
  // models keep their weights in external data files).
  coded.SetTotalBytesLimit(INT32_MAX);
  onnx::ModelProto model;
  bool ok = model.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage();
  TANDEM_CHECK(ok, ErrorCode::kInvalidModel,
               "{} is not a valid ONNX model: it could not be parsed (truncated, corrupted, or "
               "not an ONNX ModelProto)",
               what);
  TANDEM_CHECK(model.has_graph() && model.ir_version() > 0, ErrorCode::kInvalidModel,
               "{} is not a valid ONNX model: it has no graph or no ir_version", what);
  return model;
}

onnx::ModelProto parse_model_file(const std::string& path) {
  std::error_code ec;
  TANDEM_CHECK(std::filesystem::exists(path, ec), ErrorCode::kNotFound,
               "model file '{}' does not exist", path);
  // A regular file only: a FIFO or a device given as the model would block or never end.
  RegularFile file(path, fmt::format("model file '{}'", path));
  TANDEM_CHECK(file.size() <= INT32_MAX, ErrorCode::kInvalidModel,
               "'{}' is {} bytes, over protobuf's 2 GB limit (larger models keep their weights "
               "in external data files)",
               path, file.size());
  std::string bytes(static_cast<size_t>(file.size()), '\0');
  file.read_at(0, file.size(), bytes.data());
  return parse_model_bytes(bytes.data(), bytes.size(), fmt::format("'{}'", path));
}

void read_value_info(const onnx::ValueInfoProto& info, Value* v) {
  if (!info.has_type() || !info.type().has_tensor_type()) {
    if (info.has_type() && !info.type().has_tensor_type())
      raise(ErrorCode::kUnsupported,
            "value '{}' is not a tensor (sequence, map and optional types are not supported)",
            info.name());
    return;
  }
  const auto& tt = info.type().tensor_type();
  v->dtype = static_cast<DataType>(tt.elem_type());
  if (!tt.has_shape()) return;
  v->shape_known = true;
  v->shape.clear();
  v->dim_names.clear();
  for (const auto& d : tt.shape().dim()) {
    if (d.has_dim_value()) {
      v->shape.push_back(d.dim_value());
      v->dim_names.emplace_back();
    } else {
      v->shape.push_back(-1);
      v->dim_names.push_back(d.has_dim_param() ? d.dim_param() : std::string());
    }
  }
}

// Bytes of weights loaded so far, against SizeLimits::max_model_bytes.
struct WeightBudget {
  size_t max_bytes = 0;  // 0: no limit
  size_t used = 0;
  void charge(const Tensor& t, const std::string& what) {
    bool wraps = __builtin_add_overflow(used, t.nbytes(), &used);
    TANDEM_CHECK(!wraps && (max_bytes == 0 || used <= max_bytes), ErrorCode::kInvalidModel,
                 "{} brings the model's weights to {} bytes, over the per-model limit of {} "
                 "bytes (Context::max_model_bytes)",
                 what, used, max_bytes);
  }
};

Attribute convert_attribute(const onnx::AttributeProto& a, const std::string& base_dir,
                            const std::string& node_desc, const SizeLimits& limits,
                            WeightBudget& budget) {
  Attribute out;
  using AP = onnx::AttributeProto;
  switch (a.type()) {
    case AP::FLOAT:
      out.kind = Attribute::Kind::kFloat;
      out.f = a.f();
      break;
    case AP::INT:
      out.kind = Attribute::Kind::kInt;
      out.i = a.i();
      break;
    case AP::STRING:
      out.kind = Attribute::Kind::kString;
      out.s = a.s();
      break;
    case AP::TENSOR: {
      out.kind = Attribute::Kind::kTensor;
      std::string what = fmt::format("attribute '{}' of {}", a.name(), node_desc);
      out.t = tensor_from_proto(a.t(), base_dir, what, limits.max_tensor_bytes);
      budget.charge(out.t, what);
      break;
    }
    case AP::FLOATS:
      out.kind = Attribute::Kind::kFloats;
      out.floats.assign(a.floats().begin(), a.floats().end());
      break;
    case AP::INTS:
      out.kind = Attribute::Kind::kInts;
      out.ints.assign(a.ints().begin(), a.ints().end());
      break;
    case AP::STRINGS:
      out.kind = Attribute::Kind::kStrings;
      out.strings.assign(a.strings().begin(), a.strings().end());
      break;
    case AP::GRAPH:
    case AP::GRAPHS:
      out.kind = Attribute::Kind::kGraph;
      break;
    default:
      // Older files may omit `type`; infer it from which field is set.
      if (a.has_f()) {
        out.kind = Attribute::Kind::kFloat;
        out.f = a.f();
      } else if (a.has_i()) {
        out.kind = Attribute::Kind::kInt;
        out.i = a.i();
      } else if (a.has_s()) {
        out.kind = Attribute::Kind::kString;
        out.s = a.s();
      } else if (a.ints_size()) {
        out.kind = Attribute::Kind::kInts;
        out.ints.assign(a.ints().begin(), a.ints().end());
      } else if (a.floats_size()) {
        out.kind = Attribute::Kind::kFloats;
        out.floats.assign(a.floats().begin(), a.floats().end());
      }
      break;
  }
  return out;
}

// The value of a Constant node, from whichever attribute holds it.
Tensor constant_node_value(const Node& n) {
  if (n.has_attr("value")) return n.attr_tensor("value");
  if (n.has_attr("value_float"))
    return Tensor::from_vector(DataType::kFloat32, {},
                               std::vector<float>{n.attr_float("value_float")});
  if (n.has_attr("value_floats")) {
    auto v = n.attr_floats_or("value_floats", {});
    return Tensor::from_vector(DataType::kFloat32, {static_cast<int64_t>(v.size())}, v);
  }
  if (n.has_attr("value_int"))
    return Tensor::from_vector(DataType::kInt64, {}, std::vector<int64_t>{n.attr_int("value_int")});
  if (n.has_attr("value_ints")) {
    auto v = n.attr_ints("value_ints");
    return Tensor::from_vector(DataType::kInt64, {static_cast<int64_t>(v.size())}, v);
  }
  raise(ErrorCode::kUnsupported,
        "{}: only tensor, float(s) and int(s) constants are supported (string and sparse "
        "constants are not)",
        n.describe());
}

std::unique_ptr<Graph> graph_from_proto(const onnx::ModelProto& model, const std::string& base_dir,
                                        const std::string& path, const SizeLimits& limits) {
  auto graph = std::make_unique<Graph>();
  graph->limits = limits;
  WeightBudget budget{limits.max_model_bytes};
  const onnx::GraphProto& gp = model.graph();
  graph->name = gp.name();

  for (const auto& op : model.opset_import()) {
    std::string domain = op.domain() == "ai.onnx" ? "" : op.domain();
    graph->opset_imports[domain] = op.version();
  }
  // The ONNX spec (and its checker): from IR version 3 on, a model must import the default
  // domain's opset; before IR version 3 there was no opset_import and the opset is 1.
  if (model.opset_import_size() == 0) {
    TANDEM_CHECK(model.ir_version() < 3, ErrorCode::kInvalidModel,
                 "{} has IR version {} but no opset_import: from IR version 3 on, a model must "
                 "say which opset of the default domain it uses",
                 path, model.ir_version());
    graph->opset_imports[""] = 1;
  }
  auto def = graph->opset_imports.find("");
  TANDEM_CHECK(def != graph->opset_imports.end(), ErrorCode::kInvalidModel,
               "{} imports no default-domain opset", path);
  TANDEM_CHECK(def->second >= kMinOpset && def->second <= kMaxOpset, ErrorCode::kUnsupported,
               "{} uses opset {} of the default domain; Tandem supports opsets {} to {}", path,
               def->second, kMinOpset, kMaxOpset);
  TANDEM_CHECK(gp.sparse_initializer_size() == 0, ErrorCode::kUnsupported,
               "{} has sparse initializers, which are not supported", path);

  for (const auto& init : gp.initializer()) {
    TANDEM_CHECK(!init.name().empty(), ErrorCode::kInvalidModel, "{} has an unnamed initializer",
                 path);
    TANDEM_CHECK(!graph->find_value(init.name()), ErrorCode::kInvalidModel,
                 "{} defines initializer '{}' twice", path, init.name());
    std::string what = fmt::format("initializer '{}'", init.name());
    Tensor value = tensor_from_proto(init, base_dir, what, limits.max_tensor_bytes);
    budget.charge(value, what);
    if (init.data_location() == onnx::TensorProto::EXTERNAL) graph->uses_external_data = true;
    Value* v = graph->add_value(init.name());
    v->constant = std::move(value);
    v->dtype = v->constant->dtype();
    v->shape = v->constant->shape();
    v->shape_known = true;
  }
  std::set<std::string> input_names;
  for (const auto& in : gp.input()) {
    TANDEM_CHECK(input_names.insert(in.name()).second, ErrorCode::kInvalidModel,
                 "{} declares graph input '{}' twice", path, in.name());
    TANDEM_CHECK(!in.name().empty(), ErrorCode::kInvalidModel, "{} has an unnamed graph input",
                 path);
    if (Value* init = graph->find_value(in.name())) {
      (void)init;  // an initializer listed as input (IR < 4 style): it stays a constant
      continue;
    }
    Value* v = graph->add_value(in.name());
    read_value_info(in, v);
    TANDEM_CHECK(v->dtype != DataType::kUndefined, ErrorCode::kInvalidModel,
                 "model input '{}' declares no tensor element type", in.name());
    v->is_graph_input = true;
    graph->inputs.push_back(v);
  }

  std::set<std::string> node_names;
  for (int idx = 0; idx < gp.node_size(); ++idx) {
    const auto& np = gp.node(idx);
    std::string name = np.name();
    if (name.empty() || node_names.count(name)) name = fmt::format("{}_{}", np.op_type(), idx);
    node_names.insert(name);
    std::string domain = np.domain() == "ai.onnx" ? "" : np.domain();
    std::string desc = fmt::format("{} node '{}'", np.op_type(), name);

    std::vector<Value*> inputs;
    for (const auto& in_name : np.input()) {
      if (in_name.empty()) {
        inputs.push_back(nullptr);
        continue;
      }
      Value* v = graph->find_value(in_name);
      TANDEM_CHECK(v, ErrorCode::kInvalidModel,
                   "{} uses '{}', which is neither a model input, an initializer nor an output "
                   "of an earlier node",
                   desc, in_name);
      inputs.push_back(v);
    }
    std::vector<Value*> outputs;
    for (const auto& out_name : np.output()) {
      if (out_name.empty()) {
        outputs.push_back(nullptr);
        continue;
      }
      TANDEM_CHECK(!graph->find_value(out_name), ErrorCode::kInvalidModel,
                   "{} writes '{}', which is already defined (ONNX graphs are SSA)", desc,
                   out_name);
      outputs.push_back(graph->add_value(out_name));
    }
    // Kernels write output 0: a node that names no output at all (none, or only omitted ones)
    // computes nothing anyone can read and would hand its kernel no tensor to write.
    TANDEM_CHECK(std::any_of(outputs.begin(), outputs.end(), [](Value* v) { return v; }),
                 ErrorCode::kInvalidModel, "{} has no outputs", desc);
    Node* n = graph->add_node(np.op_type(), name, inputs, outputs);
    n->domain = domain;
    auto op = graph->opset_imports.find(domain);
    TANDEM_CHECK(op != graph->opset_imports.end(), ErrorCode::kInvalidModel,
                 "{} is in domain '{}', which the model does not import", desc, domain);
    n->opset = static_cast<int>(op->second);
    for (const auto& a : np.attribute()) {
      n->attrs[a.name()] = convert_attribute(a, base_dir, desc, limits, budget);
      if (a.has_t() && a.t().data_location() == onnx::TensorProto::EXTERNAL)
        graph->uses_external_data = true;
    }

    if (n->op_type == "Constant" && domain.empty()) {
      TANDEM_CHECK(outputs.size() == 1 && outputs[0], ErrorCode::kInvalidModel,
                   "{} must have exactly one output", desc);
      Value* out = outputs[0];
      Tensor value = constant_node_value(*n);
      if (!n->has_attr("value")) budget.charge(value, desc);  // a tensor attr is charged already
      graph->remove_node(n);
      value.set_name(out->name);
      out->dtype = value.dtype();
      out->shape = value.shape();
      out->shape_known = true;
      out->constant = std::move(value);
    }
  }

  for (const auto& out : gp.output()) {
    Value* v = graph->find_value(out.name());
    TANDEM_CHECK(v, ErrorCode::kInvalidModel,
                 "model output '{}' is not produced by any node, input or initializer", out.name());
    // Keep what the model declares, but never let a declaration overwrite known constants.
    if (!v->is_constant() && !v->is_graph_input) read_value_info(out, v);
    v->is_graph_output = true;
    graph->outputs.push_back(v);
  }
  for (const auto& info : gp.value_info()) {
    Value* v = graph->find_value(info.name());
    if (v && !v->is_constant() && !v->is_graph_input && !v->is_graph_output &&
        info.type().has_tensor_type())
      read_value_info(info, v);
  }
  graph->topological_sort();
  return graph;
}

}  // namespace

std::unique_ptr<Graph> load_onnx_model(const std::string& path, const SizeLimits& limits) {
  onnx::ModelProto model = parse_model_file(path);
  std::string dir = std::filesystem::path(path).parent_path().string();
  return graph_from_proto(model, dir.empty() ? "." : dir, fmt::format("'{}'", path), limits);
}

std::unique_ptr<Graph> load_onnx_model_from_bytes(const void* data, size_t size,
                                                  const SizeLimits& limits) {
  const std::string what = "the model given in memory";
  onnx::ModelProto model = parse_model_bytes(data, size, what);
  return graph_from_proto(model, "", what, limits);
}

}  // namespace tandem

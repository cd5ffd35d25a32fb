#include "onnx/loader.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "onnx/tensor_proto.h"

namespace tandem {

namespace {

onnx::ModelProto parse_model_file(const std::string& path) {
  std::error_code ec;
  TANDEM_CHECK(std::filesystem::is_regular_file(path, ec), ErrorCode::kNotFound,
               "model file '{}' does not exist or is not a file", path);
  std::ifstream in(path, std::ios::binary);
  TANDEM_CHECK(in.good(), ErrorCode::kNotFound, "model file '{}' cannot be opened", path);
  google::protobuf::io::IstreamInputStream raw(&in);
  google::protobuf::io::CodedInputStream coded(&raw);
  // Protobuf refuses messages over 64 MB by default; an ONNX file may be up to 2 GB (larger
  // models keep their weights in external data files).
  coded.SetTotalBytesLimit(INT32_MAX);
  onnx::ModelProto model;
  bool ok = model.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage();
  TANDEM_CHECK(ok, ErrorCode::kInvalidModel,
               "'{}' is not a valid ONNX model: the file could not be parsed (truncated, "
               "corrupted, or not an ONNX ModelProto)",
               path);
  TANDEM_CHECK(model.has_graph() && model.ir_version() > 0, ErrorCode::kInvalidModel,
               "'{}' is not a valid ONNX model: it has no graph or no ir_version", path);
  return model;
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

Attribute convert_attribute(const onnx::AttributeProto& a, const std::string& base_dir,
                            const std::string& node_desc) {
  Attribute out;
  using AP = onnx::AttributeProto;
  switch (a.type()) {
    case AP::FLOAT: out.kind = Attribute::Kind::kFloat; out.f = a.f(); break;
    case AP::INT: out.kind = Attribute::Kind::kInt; out.i = a.i(); break;
    case AP::STRING: out.kind = Attribute::Kind::kString; out.s = a.s(); break;
    case AP::TENSOR:
      out.kind = Attribute::Kind::kTensor;
      out.t = tensor_from_proto(a.t(), base_dir,
                                fmt::format("attribute '{}' of {}", a.name(), node_desc));
      break;
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
    case AP::GRAPHS: out.kind = Attribute::Kind::kGraph; break;
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
    return Tensor::from_vector(DataType::kFloat32, {}, std::vector<float>{n.attr_float("value_float")});
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

}  // namespace

std::unique_ptr<Graph> load_onnx_model(const std::string& path) {
  onnx::ModelProto model = parse_model_file(path);
  const std::string base_dir = std::filesystem::path(path).parent_path().string();
  auto graph = std::make_unique<Graph>();
  const onnx::GraphProto& gp = model.graph();
  graph->name = gp.name();

  for (const auto& op : model.opset_import()) {
    std::string domain = op.domain() == "ai.onnx" ? "" : op.domain();
    graph->opset_imports[domain] = op.version();
  }
  if (model.opset_import_size() == 0) graph->opset_imports[""] = 1;  // IR v1 files
  auto def = graph->opset_imports.find("");
  TANDEM_CHECK(def != graph->opset_imports.end(), ErrorCode::kInvalidModel,
               "'{}' imports no default-domain opset", path);
  TANDEM_CHECK(def->second >= kMinOpset && def->second <= kMaxOpset, ErrorCode::kUnsupported,
               "'{}' uses opset {} of the default domain; Tandem supports opsets {} to {}", path,
               def->second, kMinOpset, kMaxOpset);
  TANDEM_CHECK(gp.sparse_initializer_size() == 0, ErrorCode::kUnsupported,
               "'{}' has sparse initializers, which are not supported", path);

  for (const auto& init : gp.initializer()) {
    TANDEM_CHECK(!init.name().empty(), ErrorCode::kInvalidModel, "'{}' has an unnamed initializer",
                 path);
    TANDEM_CHECK(!graph->find_value(init.name()), ErrorCode::kInvalidModel,
                 "'{}' defines initializer '{}' twice", path, init.name());
    Value* v = graph->add_value(init.name());
    v->constant = tensor_from_proto(init, base_dir, fmt::format("initializer '{}'", init.name()));
    v->dtype = v->constant->dtype();
    v->shape = v->constant->shape();
    v->shape_known = true;
  }
  for (const auto& in : gp.input()) {
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
    Node* n = graph->add_node(np.op_type(), name, inputs, outputs);
    n->domain = domain;
    auto op = graph->opset_imports.find(domain);
    TANDEM_CHECK(op != graph->opset_imports.end(), ErrorCode::kInvalidModel,
                 "{} is in domain '{}', which the model does not import", desc, domain);
    n->opset = static_cast<int>(op->second);
    for (const auto& a : np.attribute()) n->attrs[a.name()] = convert_attribute(a, base_dir, desc);

    if (n->op_type == "Constant" && domain.empty()) {
      TANDEM_CHECK(outputs.size() == 1 && outputs[0], ErrorCode::kInvalidModel,
                   "{} must have exactly one output", desc);
      Value* out = outputs[0];
      Tensor value = constant_node_value(*n);
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
                 "model output '{}' is not produced by any node, input or initializer",
                 out.name());
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

}  // namespace tandem

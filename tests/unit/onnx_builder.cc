#include "onnx_builder.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <vector>

#include "onnx/tensor_proto.h"

namespace tandem::testing {

namespace {
void set_type(onnx::ValueInfoProto* vi, const std::string& name, DataType dtype,
              const std::vector<int64_t>& dims) {
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(static_cast<int>(dtype));
  auto* shape = tt->mutable_shape();
  for (int64_t d : dims) {
    auto* dim = shape->add_dim();
    if (d < 0)
      dim->set_dim_param("batch");
    else
      dim->set_dim_value(d);
  }
}
}  // namespace

OnnxBuilder::OnnxBuilder(int64_t opset) {
  model_.set_ir_version(8);
  model_.set_producer_name("tandem-tests");
  auto* op = model_.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  model_.mutable_graph()->set_name("test");
}

OnnxBuilder& OnnxBuilder::input(const std::string& name, DataType dtype,
                                const std::vector<int64_t>& dims) {
  set_type(model_.mutable_graph()->add_input(), name, dtype, dims);
  return *this;
}

OnnxBuilder& OnnxBuilder::output(const std::string& name, DataType dtype,
                                 const std::vector<int64_t>& dims) {
  set_type(model_.mutable_graph()->add_output(), name, dtype, dims);
  return *this;
}

OnnxBuilder& OnnxBuilder::initializer(const std::string& name, const Tensor& value) {
  auto* t = model_.mutable_graph()->add_initializer();
  tensor_to_proto(value, t);
  t->set_name(name);
  return *this;
}

onnx::NodeProto& OnnxBuilder::node(const std::string& op_type,
                                   const std::vector<std::string>& inputs,
                                   const std::vector<std::string>& outputs,
                                   const std::string& name) {
  auto* n = model_.mutable_graph()->add_node();
  n->set_op_type(op_type);
  n->set_name(name.empty() ? op_type + "_" + std::to_string(model_.graph().node_size()) : name);
  for (auto& i : inputs) n->add_input(i);
  for (auto& o : outputs) n->add_output(o);
  return *n;
}

std::string OnnxBuilder::save(const std::string& dir) const {
  std::filesystem::create_directories(dir);
  std::string path = dir + "/model.onnx";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  model_.SerializeToOstream(&out);
  return path;
}

void add_int_attr(onnx::NodeProto& node, const std::string& name, int64_t v) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

void add_ints_attr(onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = node.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}

namespace {
// The folders this test process made, removed when it exits so that runs do not pile up in /tmp.
// A forked child that exits normally runs this destructor too: it must not delete its parent's
// folders, hence the owner pid.
class TempDirs {
 public:
  void add(const std::filesystem::path& dir) {
    std::lock_guard<std::mutex> lock(mu_);
    dirs_.push_back(dir);
  }
  ~TempDirs() {
    if (::getpid() != owner_) return;
    std::error_code ec;  // best effort: a folder a test made read-only may stay
    for (const auto& d : dirs_) std::filesystem::remove_all(d, ec);
  }

 private:
  pid_t owner_ = ::getpid();
  std::mutex mu_;
  std::vector<std::filesystem::path> dirs_;
};
TempDirs& temp_dirs() {
  static TempDirs dirs;
  return dirs;
}
}  // namespace

std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("tandem_test_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  temp_dirs().add(dir);
  return dir.string();
}

}  // namespace tandem::testing

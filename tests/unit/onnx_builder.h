// Builds small ONNX models in tests, so every bad-input case is made by the test itself.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

#include "tandem/tensor.h"

namespace tandem::testing {

class OnnxBuilder {
 public:
  explicit OnnxBuilder(int64_t opset = 17);
  // dims: -1 for a symbolic dimension named "batch".
  OnnxBuilder& input(const std::string& name, DataType dtype, const std::vector<int64_t>& dims);
  OnnxBuilder& output(const std::string& name, DataType dtype, const std::vector<int64_t>& dims);
  OnnxBuilder& initializer(const std::string& name, const Tensor& value);
  onnx::NodeProto& node(const std::string& op_type, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const std::string& name = "");
  onnx::ModelProto& proto() { return model_; }
  // Writes model.onnx into `dir` (created) and returns its path.
  std::string save(const std::string& dir) const;

 private:
  onnx::ModelProto model_;
};

void add_int_attr(onnx::NodeProto& node, const std::string& name, int64_t v);
void add_ints_attr(onnx::NodeProto& node, const std::string& name, const std::vector<int64_t>& v);

// A fresh empty folder under the test temp dir, removed when the test process exits.
std::string temp_dir(const std::string& name);

}  // namespace tandem::testing

// TensorProto <-> Tensor, and the .pb files of the ONNX test-data layout.
#pragma once

#include <string>

#include "tandem/tensor.h"

namespace onnx {
class TensorProto;
}

namespace tandem {

// Converts a TensorProto. External data is read relative to `base_dir`; `what` names the tensor
// in error messages ("initializer 'w'").
Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::string& base_dir,
                         const std::string& what);
void tensor_to_proto(const Tensor& tensor, onnx::TensorProto* proto);

// A serialized TensorProto file (test_data_set_N/input_M.pb).
Tensor read_tensor_file(const std::string& path);
void write_tensor_file(const Tensor& tensor, const std::string& path);

}  // namespace tandem

// TensorProto <-> Tensor, and the .pb files of the ONNX test-data layout.
#pragma once

#include <string>

#include "core/limits.h"
#include "tandem/tensor.h"

namespace onnx {
class TensorProto;
}

namespace tandem {

// Converts a TensorProto. External data is read from files inside `base_dir` (none when it is
// empty: a model loaded from memory); `what` names the tensor in error messages ("initializer
// 'w'"). Dims, byte size (checked for overflow and against `max_tensor_bytes`, 0: no limit) and
// the data's size are all checked before anything is allocated or read.
Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::string& base_dir,
                         const std::string& what,
                         size_t max_tensor_bytes = SizeLimits{}.max_tensor_bytes);
void tensor_to_proto(const Tensor& tensor, onnx::TensorProto* proto);

// A serialized TensorProto file (test_data_set_N/input_M.pb): a regular file (no FIFO, no
// device), its external data inside its folder.
Tensor read_tensor_file(const std::string& path,
                        size_t max_tensor_bytes = SizeLimits{}.max_tensor_bytes);
// The same for a file named by untrusted data: `relative` must resolve inside `root` (no
// absolute path, no `..`, no symlink leading out).
Tensor read_tensor_file_inside(const std::string& root, const std::string& relative,
                               size_t max_tensor_bytes = SizeLimits{}.max_tensor_bytes);
// Parses serialized TensorProto bytes (the fuzzer's entry point); external data is refused.
Tensor tensor_from_bytes(const void* data, size_t size, const std::string& what,
                         size_t max_tensor_bytes = SizeLimits{}.max_tensor_bytes);
void write_tensor_file(const Tensor& tensor, const std::string& path);

}  // namespace tandem

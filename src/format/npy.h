// NumPy's .npy tensor files (format versions 1.0 to 3.0): what `tandem map` reads from an input
// folder and writes back. Only what a tensor needs: little-endian (or byte-sized) numeric and bool
// dtypes in C order. A file is untrusted input: the magic, version, header length, the header's
// dict (descr, fortran_order, shape), the element count (overflow-checked, under the tensor cap)
// and the exact file size are all checked before anything is allocated, and anything else is
// refused with an Error naming the file and the field.
#pragma once

#include <cstddef>
#include <string>

#include "core/limits.h"
#include "tandem/tensor.h"

namespace tandem {

// Parses .npy bytes; `what` names them in errors.
Tensor npy_from_bytes(const void* data, size_t size, const std::string& what,
                      size_t max_tensor_bytes = SizeLimits{}.max_tensor_bytes);
// Reads a regular .npy file (no FIFO or device).
Tensor read_npy_file(const std::string& path,
                     size_t max_tensor_bytes = SizeLimits{}.max_tensor_bytes);
// The .npy bytes of a tensor (format 1.0, or 2.0 when the header needs it).
std::string npy_to_bytes(const Tensor& tensor);
void write_npy_file(const Tensor& tensor, const std::string& path);

}  // namespace tandem

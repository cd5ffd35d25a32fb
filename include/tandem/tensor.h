// Tensor: a name, a dtype, a shape and a buffer that is either owned (shared between copies of
// the Tensor object) or borrowed from the caller (who keeps it alive).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tandem {

// The numbering is ONNX's TensorProto.DataType, so conversions are casts.
enum class DataType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kBFloat16 = 16,
};

size_t dtype_size(DataType dtype);  // bytes per element; 0 for undefined/string
const char* dtype_name(DataType dtype);
// Parses "float32"/"float", "int64", ... ; throws tandem::Error on an unknown name.
DataType dtype_from_name(const std::string& name);

using Shape = std::vector<int64_t>;
// Product of the dimensions (1 for a scalar). Negative dims are not allowed here.
int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[1,4,64,64]"

// Description of a model input or output. A negative dimension is symbolic (unknown until
// predict); dim_names holds its symbol ("batch") where the model names one.
struct TensorInfo {
  std::string name;
  DataType dtype = DataType::kUndefined;
  Shape shape;
  std::vector<std::string> dim_names;
};

// A declared shape with symbol names where the model gives them: "[batch,4,64,64]" ("?" for an
// unnamed symbolic dimension).
std::string declared_shape_str(const TensorInfo& info);

class Tensor {
 public:
  Tensor() = default;
  // Owned, zero-filled storage.
  Tensor(DataType dtype, Shape shape, std::string name = {});
  // Borrowed storage: the caller keeps `data` alive and sized as long as the Tensor is used.
  static Tensor borrow(DataType dtype, Shape shape, void* data, std::string name = {});
  // Shared ownership of memory someone else allocated: `keeper` keeps `data` alive for as long
  // as any copy of the Tensor exists (e.g. a slice of a shared-memory buffer).
  static Tensor adopt(DataType dtype, Shape shape, void* data, std::shared_ptr<void> keeper,
                      std::string name = {});
  // Owned copy of `data`.
  static Tensor copy_of(DataType dtype, Shape shape, const void* data, std::string name = {});
  template <typename T>
  static Tensor from_vector(DataType dtype, Shape shape, const std::vector<T>& v,
                            std::string name = {}) {
    return copy_of(dtype, std::move(shape), v.data(), std::move(name));
  }

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  DataType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_[i]; }
  size_t rank() const { return shape_.size(); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  bool defined() const { return dtype_ != DataType::kUndefined; }
  bool owns_data() const { return owned_; }

  void* raw() { return data_.get(); }
  const void* raw() const { return data_.get(); }
  template <typename T>
  T* data() { return static_cast<T*>(raw()); }
  template <typename T>
  const T* data() const { return static_cast<const T*>(raw()); }

  // Same buffer, new shape (numel must match).
  Tensor reshaped(Shape shape) const;
  // Owned deep copy.
  Tensor clone() const;

 private:
  std::string name_;
  DataType dtype_ = DataType::kUndefined;
  Shape shape_;
  int64_t numel_ = 0;
  std::shared_ptr<uint8_t> data_;
  bool owned_ = false;
};

}  // namespace tandem

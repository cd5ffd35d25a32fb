#include "tandem/tensor.h"

#include <cstring>

#include "core/checked.h"
#include "core/error.h"

namespace tandem {

int64_t shape_numel(const Shape& shape) {
  return checked_numel(shape, "shape");
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += shape[i] < 0 ? std::string("?") : std::to_string(shape[i]);
  }
  return s + "]";
}

std::string declared_shape_str(const TensorInfo& info) {
  std::string s = "[";
  for (size_t i = 0; i < info.shape.size(); ++i) {
    if (i) s += ",";
    if (info.shape[i] >= 0)
      s += std::to_string(info.shape[i]);
    else
      s += i < info.dim_names.size() && !info.dim_names[i].empty() ? info.dim_names[i] : "?";
  }
  return s + "]";
}

namespace {
// numel * element size must fit, so that nbytes() never wraps.
void check_byte_size(int64_t numel, DataType dtype, const Shape& shape, const std::string& name) {
  int64_t bytes = 0;
  TANDEM_CHECK(!__builtin_mul_overflow(numel, static_cast<int64_t>(dtype_size(dtype)), &bytes),
               ErrorCode::kInvalidArgument, "tensor '{}': the byte size of {} {} overflows 64 bits",
               name, dtype_name(dtype), shape_str(shape));
}

std::shared_ptr<uint8_t> allocate_zeroed(size_t bytes) {
  // 64-byte alignment keeps every kernel's vector loads aligned; +1 so empty tensors still
  // get a valid (non-null) pointer.
  size_t padded = (bytes + 64) / 64 * 64;
  void* p = std::aligned_alloc(64, padded);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, padded);
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}
}  // namespace

Tensor::Tensor(DataType dtype, Shape shape, std::string name)
    : name_(std::move(name)), dtype_(dtype), shape_(std::move(shape)) {
  TANDEM_CHECK(dtype_size(dtype) > 0, ErrorCode::kUnsupported,
               "tensor '{}': dtype {} has no fixed element size", name_, dtype_name(dtype));
  numel_ = shape_numel(shape_);
  check_byte_size(numel_, dtype_, shape_, name_);
  data_ = allocate_zeroed(nbytes());
  owned_ = true;
}

Tensor Tensor::borrow(DataType dtype, Shape shape, void* data, std::string name) {
  // Adopted with no keeper: the pointer is shared, the memory stays the caller's.
  Tensor t = adopt(dtype, std::move(shape), data, nullptr, std::move(name));
  t.owned_ = false;
  return t;
}

Tensor Tensor::adopt(DataType dtype, Shape shape, void* data, std::shared_ptr<void> keeper,
                     std::string name) {
  Tensor t;
  t.name_ = std::move(name);
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.numel_ = shape_numel(t.shape_);
  check_byte_size(t.numel_, dtype, t.shape_, t.name_);
  t.data_ = std::shared_ptr<uint8_t>(std::move(keeper), static_cast<uint8_t*>(data));
  t.owned_ = true;
  return t;
}

Tensor Tensor::copy_of(DataType dtype, Shape shape, const void* data, std::string name) {
  Tensor t(dtype, std::move(shape), std::move(name));
  if (t.nbytes()) std::memcpy(t.raw(), data, t.nbytes());
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  Tensor t = *this;
  int64_t n = shape_numel(shape);
  TANDEM_CHECK(n == numel_, ErrorCode::kInternal, "cannot reshape {} to {}", shape_str(shape_),
               shape_str(shape));
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  return copy_of(dtype_, shape_, raw(), name_);
}

}  // namespace tandem

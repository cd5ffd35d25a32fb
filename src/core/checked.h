// Overflow-checked size arithmetic. Every element count or byte size computed from numbers a
// model, a tensor file or a caller supplies goes through these: a product that wraps would size
// a buffer smaller than the loops that then walk it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "tandem/tensor.h"

namespace tandem {

// a * b, or a tandem::Error naming `what` when the product does not fit in int64 (or an operand
// is negative: sizes are never negative).
inline int64_t checked_mul(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  TANDEM_CHECK(a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, &r), ErrorCode::kInvalidModel,
               "{}: size {} x {} is negative or overflows 64 bits", what, a, b);
  return r;
}

inline int64_t checked_add(int64_t a, int64_t b, std::string_view what) {
  int64_t r = 0;
  TANDEM_CHECK(a >= 0 && b >= 0 && !__builtin_add_overflow(a, b, &r), ErrorCode::kInvalidModel,
               "{}: size {} + {} is negative or overflows 64 bits", what, a, b);
  return r;
}

// Product of the dims, refusing negative dims and overflow. The product of the nonzero dims
// must fit too (a [0, 2^62, 2^62] tensor is empty, but the strides kernels compute from its
// dims would wrap): then every partial product of a valid shape fits in int64.
inline int64_t checked_numel(const Shape& shape, std::string_view what) {
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : shape) {
    TANDEM_CHECK(d >= 0, ErrorCode::kInvalidModel, "{}: shape {} has a negative dimension", what,
                 shape_str(shape));
    if (d == 0) {
      empty = true;
      continue;
    }
    TANDEM_CHECK(!__builtin_mul_overflow(n, d, &n), ErrorCode::kInvalidModel,
                 "{}: the element count of shape {} overflows 64 bits", what, shape_str(shape));
  }
  return empty ? 0 : n;
}

// Bytes of a tensor of `shape` and `dtype`; fits in int64 (and so in size_t) or throws.
inline size_t checked_nbytes(DataType dtype, const Shape& shape, std::string_view what) {
  int64_t n = checked_numel(shape, what);
  int64_t bytes = 0;
  TANDEM_CHECK(!__builtin_mul_overflow(n, static_cast<int64_t>(dtype_size(dtype)), &bytes),
               ErrorCode::kInvalidModel, "{}: the byte size of {} {} overflows 64 bits", what,
               dtype_name(dtype), shape_str(shape));
  return static_cast<size_t>(bytes);
}

// Throws when a tensor of `bytes` exceeds `limit` (0: no limit), naming the tensor and the knob.
inline void check_tensor_cap(size_t bytes, size_t limit, std::string_view what,
                             const Shape& shape) {
  TANDEM_CHECK(limit == 0 || bytes <= limit, ErrorCode::kInvalidModel,
               "{}: tensor of shape {} needs {} bytes, over the per-tensor limit of {} bytes "
               "(Context::max_tensor_bytes, --max-tensor-bytes)",
               what, shape_str(shape), bytes, limit);
}

}  // namespace tandem

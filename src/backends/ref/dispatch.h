// Runs a generic lambda with the C++ type of a runtime dtype: f(T{}) for the numeric types.
// float16/bfloat16 are not included: reference kernels compute them in float32 via core/half.h.
#pragma once

#include <cstdint>

#include "core/error.h"
#include "ir/ir.h"

namespace tandem {

template <typename F>
void dispatch_numeric(DataType dtype, const Node& node, F&& f) {
  switch (dtype) {
    case DataType::kFloat32: f(float{}); return;
    case DataType::kFloat64: f(double{}); return;
    case DataType::kInt8: f(int8_t{}); return;
    case DataType::kInt16: f(int16_t{}); return;
    case DataType::kInt32: f(int32_t{}); return;
    case DataType::kInt64: f(int64_t{}); return;
    case DataType::kUInt8: f(uint8_t{}); return;
    case DataType::kUInt16: f(uint16_t{}); return;
    case DataType::kUInt32: f(uint32_t{}); return;
    case DataType::kUInt64: f(uint64_t{}); return;
    default:
      raise(ErrorCode::kUnsupported, "{}: dtype {} is not supported", node.describe(),
            dtype_name(dtype));
  }
}

template <typename F>
void dispatch_float(DataType dtype, const Node& node, F&& f) {
  switch (dtype) {
    case DataType::kFloat32: f(float{}); return;
    case DataType::kFloat64: f(double{}); return;
    default:
      raise(ErrorCode::kUnsupported, "{}: dtype {} is not supported (float32/float64 only)",
            node.describe(), dtype_name(dtype));
  }
}

}  // namespace tandem

// Reading any numeric tensor as doubles and writing doubles back: the simple path for reference
// kernels that compute in double precision (float16/bfloat16 included).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "backends/ref/dispatch.h"
#include "core/half.h"

namespace tandem {

inline std::vector<double> read_doubles(const Tensor& t, const Node& node) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  if (t.dtype() == DataType::kFloat16 || t.dtype() == DataType::kBFloat16) {
    const uint16_t* p = t.data<uint16_t>();
    bool bf = t.dtype() == DataType::kBFloat16;
    for (size_t i = 0; i < v.size(); ++i) v[i] = bf ? bfloat16_to_float(p[i]) : half_to_float(p[i]);
    return v;
  }
  if (t.dtype() == DataType::kBool) {
    for (size_t i = 0; i < v.size(); ++i) v[i] = t.data<bool>()[i] ? 1 : 0;
    return v;
  }
  dispatch_numeric(t.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* p = t.data<T>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(p[i]);
  });
  return v;
}

// Float dtypes round to nearest; integer dtypes truncate (callers round first when needed).
inline void write_doubles(Tensor& t, const std::vector<double>& v, const Node& node) {
  if (t.dtype() == DataType::kFloat16 || t.dtype() == DataType::kBFloat16) {
    uint16_t* p = t.data<uint16_t>();
    bool bf = t.dtype() == DataType::kBFloat16;
    for (size_t i = 0; i < v.size(); ++i) {
      float f = static_cast<float>(v[i]);
      p[i] = bf ? float_to_bfloat16(f) : float_to_half(f);
    }
    return;
  }
  if (t.dtype() == DataType::kBool) {
    for (size_t i = 0; i < v.size(); ++i) t.data<bool>()[i] = v[i] != 0;
    return;
  }
  dispatch_numeric(t.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<T>(v[i]);
  });
}

}  // namespace tandem

// From a runtime dtype to a template: visit_dtype(dtype, f) calls f(T{}) with the C++ type that
// holds one element (visit_element_bits: with the unsigned type of its size). One table maps the
// dtypes that have a native C++ type to it, so a switch over dtypes is written once, here, and not
// again in every file that converts or copies values. float16 and bfloat16 have no native type
// (their elements are uint16_t bit patterns, which uint16 already claims): callers handle them on
// their own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tandem/tensor.h"

namespace tandem {

// A dtype and the C++ type of its elements.
template <DataType D, typename T>
struct DtypeEntry {
  static constexpr DataType dtype = D;
  using type = T;
};

using NativeDtypes =
    std::tuple<DtypeEntry<DataType::kFloat32, float>, DtypeEntry<DataType::kFloat64, double>,
               DtypeEntry<DataType::kInt8, int8_t>, DtypeEntry<DataType::kInt16, int16_t>,
               DtypeEntry<DataType::kInt32, int32_t>, DtypeEntry<DataType::kInt64, int64_t>,
               DtypeEntry<DataType::kUInt8, uint8_t>, DtypeEntry<DataType::kUInt16, uint16_t>,
               DtypeEntry<DataType::kUInt32, uint32_t>, DtypeEntry<DataType::kUInt64, uint64_t>,
               DtypeEntry<DataType::kBool, bool>>;

// Filters for visit_dtype: which element types a caller's f is written for.
template <typename T>
struct AnyNative : std::true_type {};
template <typename T>
struct IsInteger : std::bool_constant<std::is_integral_v<T> && !std::is_same_v<T, bool>> {};
template <typename T>
struct IsUnsignedInteger : std::bool_constant<IsInteger<T>::value && std::is_unsigned_v<T>> {};

// Calls f(T{}) with the element type of `dtype` and returns true when the dtype has a native
// type that Keep<T> accepts; otherwise calls nothing and returns false, so the caller names the
// dtype it cannot take in its own error. f is instantiated only for the types Keep accepts.
template <template <typename> class Keep = AnyNative, typename F>
bool visit_dtype(DataType dtype, F&& f) {
  auto visit_one = [&]<typename Entry>(Entry) {
    using T = typename Entry::type;
    if constexpr (Keep<T>::value) {
      if (dtype != Entry::dtype) return false;
      f(T{});
      return true;
    } else {
      return false;
    }
  };
  return std::apply([&](auto... entries) { return (visit_one(entries) || ...); }, NativeDtypes{});
}

// Calls f(U{}) with the unsigned integer type of `bytes` bytes (1, 2, 4 or 8) and returns true;
// returns false, calling nothing, for any other size. For kernels that move elements without
// looking at them, so that every dtype of one size shares one instantiation.
template <typename F>
bool visit_element_bits(size_t bytes, F&& f) {
  auto visit_one = [&]<typename U>(U) {
    if (bytes != sizeof(U)) return false;
    f(U{});
    return true;
  };
  return (visit_one(uint8_t{}) || visit_one(uint16_t{}) || visit_one(uint32_t{}) ||
          visit_one(uint64_t{}));
}

}  // namespace tandem

// Tensors for the op tests, in one place: literal factories (f32({2, 2}, {1, 2, 3, 4})), scalars,
// seeded random tensors and the magnitude that scales a comparison's tolerance.
#pragma once

#include <cstdint>
#include <vector>

#include "tandem/tensor.h"

namespace tandem::testing {

// Literal tensors: `v` holds the elements in row-major order (its size must match the shape).
Tensor f32(Shape s, std::vector<float> v);
Tensor f64(Shape s, std::vector<double> v);
Tensor i64(Shape s, std::vector<int64_t> v);
Tensor i32(Shape s, std::vector<int32_t> v);
Tensor u8(Shape s, std::vector<uint8_t> v);
Tensor s8(Shape s, std::vector<int8_t> v);
Tensor boolean(Shape s, std::vector<uint8_t> v);  // 0 / 1 per element
Tensor scalar_f32(float v);                       // shape []
Tensor scalar_i64(int64_t v);                     // shape []

// Uniform in [-scale, scale) from std::mt19937(seed), so a case is the same on every run. Float
// dtypes take the values as drawn; int32 / int64 / int8 round 4 * value (small signed integers).
Tensor random_tensor(DataType dt, const Shape& s, uint32_t seed, float scale = 1.0f);
// Float32, uniform in [lo, hi).
Tensor random_uniform(const Shape& s, uint32_t seed, float lo = -1.0f, float hi = 1.0f);
// Random bytes for any fixed-size dtype (bool: 0 / 1); float bit patterns may be NaN, so only
// for ops that move data and are compared bytewise.
Tensor random_bytes(DataType dt, const Shape& s, uint32_t seed);

// Largest |element| (float32, float64 and integer dtypes; 0 for an empty tensor).
double max_abs(const Tensor& t);

}  // namespace tandem::testing

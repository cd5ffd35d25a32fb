#include "test_tensors.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

namespace tandem::testing {

Tensor f32(Shape s, std::vector<float> v) {
  return Tensor::from_vector(DataType::kFloat32, std::move(s), v);
}
Tensor f64(Shape s, std::vector<double> v) {
  return Tensor::from_vector(DataType::kFloat64, std::move(s), v);
}
Tensor i64(Shape s, std::vector<int64_t> v) {
  return Tensor::from_vector(DataType::kInt64, std::move(s), v);
}
Tensor i32(Shape s, std::vector<int32_t> v) {
  return Tensor::from_vector(DataType::kInt32, std::move(s), v);
}
Tensor u8(Shape s, std::vector<uint8_t> v) {
  return Tensor::from_vector(DataType::kUInt8, std::move(s), v);
}
Tensor s8(Shape s, std::vector<int8_t> v) {
  return Tensor::from_vector(DataType::kInt8, std::move(s), v);
}
Tensor boolean(Shape s, std::vector<uint8_t> v) {
  return Tensor::from_vector(DataType::kBool, std::move(s), v);
}
Tensor scalar_f32(float v) {
  return f32({}, {v});
}
Tensor scalar_i64(int64_t v) {
  return i64({}, {v});
}

Tensor random_tensor(DataType dt, const Shape& s, uint32_t seed, float scale) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  Tensor t(dt, s);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = dist(gen);
    switch (dt) {
      case DataType::kFloat32:
        t.data<float>()[i] = v;
        break;
      case DataType::kFloat64:
        t.data<double>()[i] = v;
        break;
      case DataType::kInt32:
        t.data<int32_t>()[i] = static_cast<int32_t>(std::lround(4 * v));
        break;
      case DataType::kInt64:
        t.data<int64_t>()[i] = std::lround(4 * v);
        break;
      case DataType::kInt8:
        t.data<int8_t>()[i] = static_cast<int8_t>(std::lround(4 * v));
        break;
      default:
        throw std::invalid_argument(std::string("random_tensor: unsupported dtype ") +
                                    dtype_name(dt));
    }
  }
  return t;
}

Tensor random_uniform(const Shape& s, uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t(DataType::kFloat32, s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(gen);
  return t;
}

Tensor random_bytes(DataType dt, const Shape& s, uint32_t seed) {
  std::mt19937 gen(seed);
  Tensor t(dt, s);
  auto* p = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>(gen());
  if (dt == DataType::kBool)
    for (size_t i = 0; i < t.nbytes(); ++i) p[i] &= 1;
  return t;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = 0;
    switch (t.dtype()) {
      case DataType::kFloat32:
        v = t.data<float>()[i];
        break;
      case DataType::kFloat64:
        v = t.data<double>()[i];
        break;
      case DataType::kInt32:
        v = t.data<int32_t>()[i];
        break;
      case DataType::kInt64:
        v = static_cast<double>(t.data<int64_t>()[i]);
        break;
      default:
        break;  // other dtypes: compared bytewise or exactly, no magnitude needed
    }
    m = std::max(m, std::abs(v));
  }
  return m;
}

}  // namespace tandem::testing

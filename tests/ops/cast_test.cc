// Cast family: conversions between the numeric dtypes, bool and the 16-bit floats.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/half.h"
#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"

namespace tandem {
namespace {

using testing::attr_int;
using testing::OpTest;

Tensor cast(const Tensor& x, DataType to) {
  return OpTest("Cast").input(x).attr("to", static_cast<int>(to)).run_ref()[0];
}

template <typename T>
std::vector<T> values(const Tensor& t) {
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

TEST(Cast, FloatToIntTruncatesTowardZero) {
  Tensor x = Tensor::from_vector(DataType::kFloat32, {2, 3},
                                 std::vector<float>{1.9f, -1.9f, 0.5f, -0.5f, 100.0f, -7.0f});
  Tensor out = cast(x, DataType::kInt32);
  EXPECT_EQ(out.dtype(), DataType::kInt32);
  EXPECT_EQ(out.shape(), (Shape{2, 3}));
  EXPECT_EQ(values<int32_t>(out), (std::vector<int32_t>{1, -1, 0, 0, 100, -7}));
  EXPECT_EQ(values<int64_t>(cast(x, DataType::kInt64)),
            (std::vector<int64_t>{1, -1, 0, 0, 100, -7}));
  EXPECT_EQ(values<int8_t>(cast(x, DataType::kInt8)), (std::vector<int8_t>{1, -1, 0, 0, 100, -7}));
}

TEST(Cast, IntegersBoolAndDouble) {
  Tensor x = Tensor::from_vector(DataType::kInt64, {4}, std::vector<int64_t>{0, 3, -2, 1LL << 40});
  EXPECT_EQ(values<uint8_t>(cast(x, DataType::kBool)), (std::vector<uint8_t>{0, 1, 1, 1}));
  EXPECT_EQ(values<double>(cast(x, DataType::kFloat64)),
            (std::vector<double>{0, 3, -2, 1099511627776.0}));
  // int64 -> int32 keeps the low 32 bits.
  EXPECT_EQ(values<int32_t>(cast(x, DataType::kInt32)), (std::vector<int32_t>{0, 3, -2, 0}));
  Tensor b = Tensor::from_vector(DataType::kBool, {2}, std::vector<uint8_t>{1, 0});
  EXPECT_EQ(values<float>(cast(b, DataType::kFloat32)), (std::vector<float>{1, 0}));
  Tensor f = Tensor::from_vector(DataType::kFloat32, {3}, std::vector<float>{0.0f, -0.1f, NAN});
  EXPECT_EQ(values<uint8_t>(cast(f, DataType::kBool)), (std::vector<uint8_t>{0, 1, 1}));
}

TEST(Cast, Float16AndBFloat16RoundTrip) {
  Tensor x = Tensor::from_vector(DataType::kFloat32, {4},
                                 std::vector<float>{1.0f, -2.5f, 65504.0f, 0.333333f});
  Tensor h = cast(x, DataType::kFloat16);
  ASSERT_EQ(h.dtype(), DataType::kFloat16);
  EXPECT_EQ(h.data<uint16_t>()[0], 0x3c00);  // 1.0
  EXPECT_EQ(h.data<uint16_t>()[1], 0xc100);  // -2.5
  EXPECT_EQ(h.data<uint16_t>()[2], 0x7bff);  // largest half
  Tensor back = cast(h, DataType::kFloat64);
  EXPECT_EQ(back.data<double>()[1], -2.5);
  EXPECT_NEAR(back.data<double>()[3], 0.333333, 2e-4);
  Tensor bf = cast(x, DataType::kBFloat16);
  EXPECT_EQ(bf.data<uint16_t>()[0], 0x3f80);  // 1.0
  EXPECT_EQ(values<int32_t>(cast(bf, DataType::kInt32))[1], -2);
  // float16 -> int truncates too.
  EXPECT_EQ(values<int64_t>(cast(h, DataType::kInt64)), (std::vector<int64_t>{1, -2, 65504, 0}));
}

TEST(Cast, CastLikeTakesTheSecondInputsDtype) {
  Tensor x = Tensor::from_vector(DataType::kFloat64, {2}, std::vector<double>{1.5, -3.25});
  Tensor like = Tensor::from_vector(DataType::kFloat32, {1}, std::vector<float>{0});
  Tensor out = OpTest("CastLike").inputs({x, like}).opset(15).run_ref()[0];
  EXPECT_EQ(out.dtype(), DataType::kFloat32);
  EXPECT_EQ(values<float>(out), (std::vector<float>{1.5f, -3.25f}));
}

TEST(Cast, Errors) {
  Tensor x = Tensor::from_vector(DataType::kFloat32, {1}, std::vector<float>{1});
  try {
    cast(x, DataType::kString);
    FAIL() << "cast to string should throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("string"), std::string::npos);
  }
  EXPECT_THROW(OpTest("Cast").input(x).run_ref(), Error);  // no `to`
}

}  // namespace
}  // namespace tandem

// visit_dtype (core/dtype_visit.h) and the decoding of TensorProto's typed fields built on it.
#include "core/dtype_visit.h"
#include "core/error.h"

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "onnx/tensor_proto.h"

namespace tandem {
namespace {

// The element size and signedness f sees for a dtype, or "none" when visit_dtype declines it.
template <template <typename> class Keep = AnyNative>
std::string visited(DataType dtype) {
  std::string seen = "none";
  const bool ok = visit_dtype<Keep>(dtype, [&](auto tag) {
    using T = decltype(tag);
    seen = std::string(std::is_same_v<T, bool>       ? "bool"
                       : std::is_floating_point_v<T> ? "float"
                       : std::is_signed_v<T>         ? "int"
                                                     : "uint") +
           std::to_string(sizeof(T) * 8);
  });
  EXPECT_EQ(ok, seen != "none") << dtype_name(dtype);
  return seen;
}

TEST(DtypeVisit, EachNativeDtypeGetsItsOwnType) {
  EXPECT_EQ(visited(DataType::kFloat32), "float32");
  EXPECT_EQ(visited(DataType::kFloat64), "float64");
  EXPECT_EQ(visited(DataType::kInt8), "int8");
  EXPECT_EQ(visited(DataType::kInt16), "int16");
  EXPECT_EQ(visited(DataType::kInt32), "int32");
  EXPECT_EQ(visited(DataType::kInt64), "int64");
  EXPECT_EQ(visited(DataType::kUInt8), "uint8");
  EXPECT_EQ(visited(DataType::kUInt16), "uint16");
  EXPECT_EQ(visited(DataType::kUInt32), "uint32");
  EXPECT_EQ(visited(DataType::kUInt64), "uint64");
  EXPECT_EQ(visited(DataType::kBool), "bool8");
  for (DataType d : {DataType::kFloat16, DataType::kBFloat16, DataType::kString,
                     DataType::kUndefined, static_cast<DataType>(14)})
    EXPECT_EQ(visited(d), "none") << dtype_name(d);
}

TEST(DtypeVisit, FiltersDeclineTheTypesTheyReject) {
  EXPECT_EQ(visited<IsInteger>(DataType::kInt16), "int16");
  EXPECT_EQ(visited<IsInteger>(DataType::kUInt64), "uint64");
  EXPECT_EQ(visited<IsInteger>(DataType::kBool), "none");
  EXPECT_EQ(visited<IsInteger>(DataType::kFloat32), "none");
  EXPECT_EQ(visited<IsUnsignedInteger>(DataType::kUInt8), "uint8");
  EXPECT_EQ(visited<IsUnsignedInteger>(DataType::kInt8), "none");
  EXPECT_EQ(visited<IsUnsignedInteger>(DataType::kBool), "none");
}

// Each dtype's values from the typed field onnx.proto keeps them in, as the element type.
TEST(DtypeVisit, TensorProtoTypedFieldsDecodeEveryDtype) {
  auto make = [](onnx::TensorProto::DataType dt) {
    onnx::TensorProto p;
    p.set_data_type(dt);
    p.add_dims(2);
    return p;
  };
  onnx::TensorProto p = make(onnx::TensorProto::FLOAT);
  p.add_float_data(1.5f);
  p.add_float_data(-2.f);
  Tensor t = tensor_from_proto(p, "", "t", 1 << 20);
  EXPECT_EQ(t.data<float>()[0], 1.5f);
  EXPECT_EQ(t.data<float>()[1], -2.f);
  p = make(onnx::TensorProto::DOUBLE);
  p.add_double_data(0.25);
  p.add_double_data(3);
  t = tensor_from_proto(p, "", "t", 1 << 20);
  EXPECT_EQ(t.data<double>()[1], 3.0);
  p = make(onnx::TensorProto::INT64);
  p.add_int64_data(-7);
  p.add_int64_data(INT64_MAX);
  t = tensor_from_proto(p, "", "t", 1 << 20);
  EXPECT_EQ(t.data<int64_t>()[1], INT64_MAX);
  p = make(onnx::TensorProto::UINT32);
  p.add_uint64_data(4000000000u);
  p.add_uint64_data(1);
  t = tensor_from_proto(p, "", "t", 1 << 20);
  EXPECT_EQ(t.data<uint32_t>()[0], 4000000000u);
  p = make(onnx::TensorProto::INT8);
  p.add_int32_data(-128);
  p.add_int32_data(127);
  t = tensor_from_proto(p, "", "t", 1 << 20);
  EXPECT_EQ(t.data<int8_t>()[0], -128);
  p = make(onnx::TensorProto::FLOAT16);
  p.add_int32_data(0x3c00);  // 1.0 as a bit pattern
  p.add_int32_data(0xc000);  // -2.0
  t = tensor_from_proto(p, "", "t", 1 << 20);
  EXPECT_EQ(t.data<uint16_t>()[0], 0x3c00);
  EXPECT_EQ(t.data<uint16_t>()[1], 0xc000);
  p = make(onnx::TensorProto::BOOL);
  p.add_int32_data(0);
  p.add_int32_data(5);
  t = tensor_from_proto(p, "", "t", 1 << 20);
  EXPECT_FALSE(t.data<bool>()[0]);
  EXPECT_TRUE(t.data<bool>()[1]);
  // A count that disagrees with the shape is refused before anything is copied.
  p = make(onnx::TensorProto::UINT64);
  p.add_uint64_data(1);
  EXPECT_THROW(tensor_from_proto(p, "", "t", 1 << 20), Error);
}

}  // namespace
}  // namespace tandem

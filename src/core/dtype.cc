#include <map>

#include "core/error.h"
#include "tandem/tensor.h"

namespace tandem {

size_t dtype_size(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32: return 4;
    case DataType::kUInt8: return 1;
    case DataType::kInt8: return 1;
    case DataType::kUInt16: return 2;
    case DataType::kInt16: return 2;
    case DataType::kInt32: return 4;
    case DataType::kInt64: return 8;
    case DataType::kBool: return 1;
    case DataType::kFloat16: return 2;
    case DataType::kFloat64: return 8;
    case DataType::kUInt32: return 4;
    case DataType::kUInt64: return 8;
    case DataType::kBFloat16: return 2;
    case DataType::kString:
    case DataType::kUndefined: return 0;
  }
  return 0;
}

const char* dtype_name(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat32: return "float32";
    case DataType::kUInt8: return "uint8";
    case DataType::kInt8: return "int8";
    case DataType::kUInt16: return "uint16";
    case DataType::kInt16: return "int16";
    case DataType::kInt32: return "int32";
    case DataType::kInt64: return "int64";
    case DataType::kBool: return "bool";
    case DataType::kFloat16: return "float16";
    case DataType::kFloat64: return "float64";
    case DataType::kUInt32: return "uint32";
    case DataType::kUInt64: return "uint64";
    case DataType::kBFloat16: return "bfloat16";
    case DataType::kString: return "string";
    case DataType::kUndefined: return "undefined";
  }
  return "unknown";
}

DataType dtype_from_name(const std::string& name) {
  static const std::map<std::string, DataType> names = {
      {"float32", DataType::kFloat32}, {"float", DataType::kFloat32},
      {"uint8", DataType::kUInt8},     {"int8", DataType::kInt8},
      {"uint16", DataType::kUInt16},   {"int16", DataType::kInt16},
      {"int32", DataType::kInt32},     {"int64", DataType::kInt64},
      {"bool", DataType::kBool},       {"float16", DataType::kFloat16},
      {"half", DataType::kFloat16},    {"float64", DataType::kFloat64},
      {"double", DataType::kFloat64},  {"uint32", DataType::kUInt32},
      {"uint64", DataType::kUInt64},   {"bfloat16", DataType::kBFloat16},
  };
  auto it = names.find(name);
  TANDEM_CHECK(it != names.end(), ErrorCode::kInvalidArgument, "unknown dtype '{}'", name);
  return it->second;
}

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid argument";
    case ErrorCode::kInvalidModel: return "invalid model";
    case ErrorCode::kUnsupported: return "unsupported";
    case ErrorCode::kNotFound: return "not found";
    case ErrorCode::kRuntime: return "runtime error";
    case ErrorCode::kInternal: return "internal error";
  }
  return "error";
}

}  // namespace tandem

#include "onnx/tensor_proto.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/onnx_pb.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace tandem {

namespace {

template <typename Src, typename Dst>
void copy_field(const Src& field, Tensor& t) {
  Dst* out = t.data<Dst>();
  for (int i = 0; i < field.size(); ++i) out[i] = static_cast<Dst>(field[i]);
}

void read_external(const onnx::TensorProto& proto, const std::string& base_dir,
                   const std::string& what, Tensor& t) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto& kv : proto.external_data()) {
    if (kv.key() == "location") location = kv.value();
    if (kv.key() == "offset") offset = std::stoll(kv.value());
    if (kv.key() == "length") length = std::stoll(kv.value());
  }
  TANDEM_CHECK(!location.empty(), ErrorCode::kInvalidModel,
               "{} is stored externally but names no file (external_data has no 'location')",
               what);
  std::filesystem::path path = std::filesystem::path(base_dir) / location;
  std::ifstream in(path, std::ios::binary);
  TANDEM_CHECK(in.good(), ErrorCode::kNotFound, "{}: external data file '{}' is missing", what,
               path.string());
  in.seekg(0, std::ios::end);
  int64_t file_size = in.tellg();
  int64_t need = static_cast<int64_t>(t.nbytes());
  TANDEM_CHECK(length < 0 || length == need, ErrorCode::kInvalidModel,
               "{}: external data length {} does not match its shape {} ({} bytes)", what, length,
               shape_str(t.shape()), need);
  TANDEM_CHECK(offset >= 0 && offset + need <= file_size, ErrorCode::kInvalidModel,
               "{}: external data file '{}' is too short ({} bytes; need {} at offset {})", what,
               path.string(), file_size, need, offset);
  in.seekg(offset);
  in.read(static_cast<char*>(t.raw()), need);
  TANDEM_CHECK(in.good(), ErrorCode::kInvalidModel, "{}: could not read external data from '{}'",
               what, path.string());
}

}  // namespace

Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::string& base_dir,
                         const std::string& what) {
  auto dtype = static_cast<DataType>(proto.data_type());
  TANDEM_CHECK(dtype != DataType::kString, ErrorCode::kUnsupported,
               "{}: string tensors are not supported", what);
  TANDEM_CHECK(dtype_size(dtype) > 0, ErrorCode::kInvalidModel,
               "{}: unknown or unsupported data type {}", what, proto.data_type());
  Shape shape(proto.dims().begin(), proto.dims().end());
  for (int64_t d : shape)
    TANDEM_CHECK(d >= 0, ErrorCode::kInvalidModel, "{}: negative dimension in {}", what,
                 shape_str(shape));
  Tensor t(dtype, shape, proto.name());
  const size_t nbytes = t.nbytes();
  const int64_t n = t.numel();

  if (proto.data_location() == onnx::TensorProto::EXTERNAL) {
    read_external(proto, base_dir, what, t);
    return t;
  }
  if (proto.has_raw_data()) {
    TANDEM_CHECK(proto.raw_data().size() == nbytes, ErrorCode::kInvalidModel,
                 "{}: raw data holds {} bytes but shape {} of {} needs {}", what,
                 proto.raw_data().size(), shape_str(shape), dtype_name(dtype), nbytes);
    if (nbytes) std::memcpy(t.raw(), proto.raw_data().data(), nbytes);
    return t;
  }
  auto check_count = [&](int count) {
    TANDEM_CHECK(count == n, ErrorCode::kInvalidModel,
                 "{}: holds {} values but shape {} needs {}", what, count, shape_str(shape), n);
  };
  switch (dtype) {
    case DataType::kFloat32:
      check_count(proto.float_data_size());
      copy_field<decltype(proto.float_data()), float>(proto.float_data(), t);
      break;
    case DataType::kFloat64:
      check_count(proto.double_data_size());
      copy_field<decltype(proto.double_data()), double>(proto.double_data(), t);
      break;
    case DataType::kInt64:
      check_count(proto.int64_data_size());
      copy_field<decltype(proto.int64_data()), int64_t>(proto.int64_data(), t);
      break;
    case DataType::kUInt64:
      check_count(proto.uint64_data_size());
      copy_field<decltype(proto.uint64_data()), uint64_t>(proto.uint64_data(), t);
      break;
    case DataType::kUInt32:
      check_count(proto.uint64_data_size());
      copy_field<decltype(proto.uint64_data()), uint32_t>(proto.uint64_data(), t);
      break;
    case DataType::kInt32:
      check_count(proto.int32_data_size());
      copy_field<decltype(proto.int32_data()), int32_t>(proto.int32_data(), t);
      break;
    case DataType::kInt16:
      check_count(proto.int32_data_size());
      copy_field<decltype(proto.int32_data()), int16_t>(proto.int32_data(), t);
      break;
    case DataType::kInt8:
      check_count(proto.int32_data_size());
      copy_field<decltype(proto.int32_data()), int8_t>(proto.int32_data(), t);
      break;
    case DataType::kUInt16:
    case DataType::kFloat16:
    case DataType::kBFloat16:
      // 16-bit types are stored as their bit patterns in int32_data.
      check_count(proto.int32_data_size());
      copy_field<decltype(proto.int32_data()), uint16_t>(proto.int32_data(), t);
      break;
    case DataType::kUInt8:
      check_count(proto.int32_data_size());
      copy_field<decltype(proto.int32_data()), uint8_t>(proto.int32_data(), t);
      break;
    case DataType::kBool:
      check_count(proto.int32_data_size());
      for (int64_t i = 0; i < n; ++i) t.data<bool>()[i] = proto.int32_data(static_cast<int>(i)) != 0;
      break;
    default:
      raise(ErrorCode::kUnsupported, "{}: data type {} is not supported", what,
            dtype_name(dtype));
  }
  return t;
}

void tensor_to_proto(const Tensor& tensor, onnx::TensorProto* proto) {
  proto->Clear();
  proto->set_name(tensor.name());
  proto->set_data_type(static_cast<int32_t>(tensor.dtype()));
  for (int64_t d : tensor.shape()) proto->add_dims(d);
  proto->set_raw_data(tensor.raw(), tensor.nbytes());
}

Tensor read_tensor_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TANDEM_CHECK(in.good(), ErrorCode::kNotFound, "tensor file '{}' does not exist or cannot be read",
               path);
  google::protobuf::io::IstreamInputStream raw(&in);
  google::protobuf::io::CodedInputStream coded(&raw);
  coded.SetTotalBytesLimit(INT32_MAX);
  onnx::TensorProto proto;
  TANDEM_CHECK(proto.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage(),
               ErrorCode::kInvalidArgument,
               "'{}' is not a valid serialized TensorProto (truncated, or another format)", path);
  std::string dir = std::filesystem::path(path).parent_path().string();
  return tensor_from_proto(proto, dir, fmt::format("tensor file '{}'", path));
}

void write_tensor_file(const Tensor& tensor, const std::string& path) {
  onnx::TensorProto proto;
  tensor_to_proto(tensor, &proto);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  TANDEM_CHECK(out.good() && proto.SerializeToOstream(&out), ErrorCode::kRuntime,
               "could not write tensor file '{}'", path);
}

}  // namespace tandem

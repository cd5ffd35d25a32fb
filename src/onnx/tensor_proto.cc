#include "onnx/tensor_proto.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <onnx/onnx_pb.h>

#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/checked.h"
#include "core/dtype_visit.h"
#include "core/error.h"
#include "onnx/safe_file.h"

namespace tandem {

namespace {

// The typed field that holds elements of type T when raw_data is absent: onnx.proto keeps
// float, double and int64 in their own fields, uint32 and uint64 in uint64_data, and the narrower
// integers and bool in int32_data.
template <typename T>
const auto& typed_field(const onnx::TensorProto& proto) {
  if constexpr (std::is_same_v<T, float>) {
    return proto.float_data();
  } else if constexpr (std::is_same_v<T, double>) {
    return proto.double_data();
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return proto.int64_data();
  } else if constexpr (std::is_same_v<T, uint64_t> || std::is_same_v<T, uint32_t>) {
    return proto.uint64_data();
  } else {
    return proto.int32_data();
  }
}

// Calls f(field, T{}) with the typed field that holds dtype's values and the C++ type of one
// element: float16 and bfloat16 are their uint16_t bit patterns, kept in int32_data.
template <typename F>
void with_typed_field(const onnx::TensorProto& proto, DataType dtype, const std::string& what,
                      F&& f) {
  if (dtype == DataType::kFloat16 || dtype == DataType::kBFloat16)
    return f(proto.int32_data(), uint16_t{});
  const bool native =
      visit_dtype(dtype, [&](auto tag) { f(typed_field<decltype(tag)>(proto), tag); });
  if (!native)
    raise(ErrorCode::kUnsupported, "{}: data type {} is not supported", what, dtype_name(dtype));
}

// How many values the typed field that holds `dtype` has.
int64_t typed_count(const onnx::TensorProto& proto, DataType dtype, const std::string& what) {
  int64_t count = 0;
  with_typed_field(proto, dtype, what, [&](const auto& field, auto) { count = field.size(); });
  return count;
}

// Converts each value of the field to the tensor's element type Dst (bool: non-zero is true).
template <typename Dst, typename Src>
void copy_field(const Src& field, Tensor& t) {
  Dst* out = t.data<Dst>();
  for (int i = 0; i < field.size(); ++i) out[i] = static_cast<Dst>(field[i]);
}

// A non-negative decimal integer, the whole string; names key, value and tensor otherwise.
int64_t parse_size_field(const std::string& key, const std::string& value,
                         const std::string& what) {
  int64_t out = 0;
  const char* first = value.data();
  const char* last = first + value.size();
  auto [ptr, ec] = std::from_chars(first, last, out);
  TANDEM_CHECK(!value.empty() && ec == std::errc() && ptr == last && out >= 0,
               ErrorCode::kInvalidModel,
               "{}: external_data '{}' is '{}', not a non-negative integer that fits in 64 bits",
               what, key, value);
  return out;
}

Tensor read_external(const onnx::TensorProto& proto, const std::string& base_dir,
                     const std::string& what, DataType dtype, const Shape& shape, size_t nbytes) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (const auto& kv : proto.external_data()) {
    if (kv.key() == "location") location = kv.value();
    if (kv.key() == "offset") offset = parse_size_field(kv.key(), kv.value(), what);
    if (kv.key() == "length") length = parse_size_field(kv.key(), kv.value(), what);
  }
  TANDEM_CHECK(!location.empty(), ErrorCode::kInvalidModel,
               "{} is stored externally but names no file (external_data has no 'location')", what);
  TANDEM_CHECK(!base_dir.empty(), ErrorCode::kInvalidModel,
               "{} is stored externally in '{}', but the model was loaded from memory (no "
               "folder to read it from)",
               what, location);
  const int64_t need = static_cast<int64_t>(nbytes);
  TANDEM_CHECK(length < 0 || length == need, ErrorCode::kInvalidModel,
               "{}: external data length {} does not match its shape {} ({} bytes)", what, length,
               shape_str(shape), need);
  std::filesystem::path path =
      resolve_inside(base_dir, location, fmt::format("{}: external data", what));
  RegularFile file(path, fmt::format("{}: external data", what));
  int64_t end = 0;
  TANDEM_CHECK(!__builtin_add_overflow(offset, need, &end) && end <= file.size(),
               ErrorCode::kInvalidModel,
               "{}: external data file '{}' is too short ({} bytes; need {} at offset {})", what,
               path.string(), file.size(), need, offset);
  Tensor t(dtype, shape, proto.name());  // allocated once the file is known to hold the bytes
  file.read_at(offset, need, t.raw());
  return t;
}

}  // namespace

Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::string& base_dir,
                         const std::string& what, size_t max_tensor_bytes) {
  auto dtype = static_cast<DataType>(proto.data_type());
  TANDEM_CHECK(dtype != DataType::kString, ErrorCode::kUnsupported,
               "{}: string tensors are not supported", what);
  TANDEM_CHECK(dtype_size(dtype) > 0, ErrorCode::kInvalidModel,
               "{}: unknown or unsupported data type {}", what, proto.data_type());
  Shape shape(proto.dims().begin(), proto.dims().end());
  for (int64_t d : shape)
    TANDEM_CHECK(d >= 0, ErrorCode::kInvalidModel, "{}: negative dimension in {}", what,
                 shape_str(shape));
  // Sizes first, data next, allocation last: nothing is allocated or read for a shape that
  // overflows, exceeds the cap or disagrees with the data the proto holds.
  const size_t nbytes = checked_nbytes(dtype, shape, what);
  const int64_t n = checked_numel(shape, what);
  check_tensor_cap(nbytes, max_tensor_bytes, what, shape);
  const bool external = proto.data_location() == onnx::TensorProto::EXTERNAL;
  if (!external && proto.has_raw_data())
    TANDEM_CHECK(proto.raw_data().size() == nbytes, ErrorCode::kInvalidModel,
                 "{}: raw data holds {} bytes but shape {} of {} needs {}", what,
                 proto.raw_data().size(), shape_str(shape), dtype_name(dtype), nbytes);
  if (!external && !proto.has_raw_data())
    TANDEM_CHECK(typed_count(proto, dtype, what) == n, ErrorCode::kInvalidModel,
                 "{}: holds {} values but shape {} needs {}", what, typed_count(proto, dtype, what),
                 shape_str(shape), n);
  if (external) return read_external(proto, base_dir, what, dtype, shape, nbytes);
  Tensor t(dtype, shape, proto.name());
  if (proto.has_raw_data()) {
    if (nbytes) std::memcpy(t.raw(), proto.raw_data().data(), nbytes);
    return t;
  }
  // The count was checked against the shape above, before the allocation.
  with_typed_field(proto, dtype, what,
                   [&](const auto& field, auto tag) { copy_field<decltype(tag)>(field, t); });
  return t;
}

void tensor_to_proto(const Tensor& tensor, onnx::TensorProto* proto) {
  proto->Clear();
  proto->set_name(tensor.name());
  proto->set_data_type(static_cast<int32_t>(tensor.dtype()));
  for (int64_t d : tensor.shape()) proto->add_dims(d);
  proto->set_raw_data(tensor.raw(), tensor.nbytes());
}

namespace {
Tensor parse_tensor_bytes(const void* data, size_t size, const std::string& base_dir,
                          const std::string& what, size_t max_tensor_bytes) {
  TANDEM_CHECK(size <= static_cast<size_t>(INT32_MAX), ErrorCode::kInvalidArgument,
               "{} is {} bytes, over protobuf's 2 GB limit", what, size);
  google::protobuf::io::CodedInputStream coded(static_cast<const uint8_t*>(data),
                                               static_cast<int>(size));
  coded.SetTotalBytesLimit(INT32_MAX);
  onnx::TensorProto proto;
  TANDEM_CHECK(proto.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage(),
               ErrorCode::kInvalidArgument,
               "{} is not a valid serialized TensorProto (truncated, or another format)", what);
  return tensor_from_proto(proto, base_dir, what, max_tensor_bytes);
}

Tensor read_tensor_at(const std::filesystem::path& path, size_t max_tensor_bytes) {
  const std::string what = fmt::format("tensor file '{}'", path.string());
  RegularFile file(path, what);
  TANDEM_CHECK(file.size() <= INT32_MAX, ErrorCode::kInvalidArgument,
               "{} is {} bytes, over protobuf's 2 GB limit", what, file.size());
  std::string bytes(static_cast<size_t>(file.size()), '\0');
  file.read_at(0, file.size(), bytes.data());
  std::string dir = path.parent_path().string();
  return parse_tensor_bytes(bytes.data(), bytes.size(), dir.empty() ? "." : dir, what,
                            max_tensor_bytes);
}
}  // namespace

Tensor read_tensor_file(const std::string& path, size_t max_tensor_bytes) {
  std::error_code ec;
  TANDEM_CHECK(std::filesystem::exists(path, ec), ErrorCode::kNotFound,
               "tensor file '{}' does not exist or cannot be read", path);
  return read_tensor_at(path, max_tensor_bytes);
}

Tensor read_tensor_file_inside(const std::string& root, const std::string& relative,
                               size_t max_tensor_bytes) {
  std::filesystem::path path =
      resolve_inside(root, relative, fmt::format("tensor file '{}' in '{}'", relative, root));
  return read_tensor_at(path, max_tensor_bytes);
}

Tensor tensor_from_bytes(const void* data, size_t size, const std::string& what,
                         size_t max_tensor_bytes) {
  return parse_tensor_bytes(data, size, "", what, max_tensor_bytes);
}

void write_tensor_file(const Tensor& tensor, const std::string& path) {
  onnx::TensorProto proto;
  tensor_to_proto(tensor, &proto);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  TANDEM_CHECK(out.good() && proto.SerializeToOstream(&out), ErrorCode::kRuntime,
               "could not write tensor file '{}'", path);
}

}  // namespace tandem

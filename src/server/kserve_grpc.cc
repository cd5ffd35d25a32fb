#include "server/kserve_grpc.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <type_traits>
#include <utility>

#include "core/checked.h"
#include "core/error.h"

namespace tandem::server {

namespace {

using inference::InferTensorContents;
using inference::ModelInferRequest;

[[noreturn]] void bad(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}

// A name from the request, cut short for a message (a megabyte name must not make a megabyte
// error).
std::string quoted(const std::string& s) {
  return s.size() > 256 ? s.substr(0, 256) + "..." : s;
}

// The typed fields of InferTensorContents, and which dtypes each carries.
enum class Field { kBool, kInt, kInt64, kUInt, kUInt64, kFp32, kFp64, kBytes, kNone };

Field field_of(DataType dtype) {
  switch (dtype) {
    case DataType::kBool:
      return Field::kBool;
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32:
      return Field::kInt;
    case DataType::kInt64:
      return Field::kInt64;
    case DataType::kUInt8:
    case DataType::kUInt16:
    case DataType::kUInt32:
      return Field::kUInt;
    case DataType::kUInt64:
      return Field::kUInt64;
    case DataType::kFloat32:
      return Field::kFp32;
    case DataType::kFloat64:
      return Field::kFp64;
    default:
      return Field::kNone;  // FP16, BF16: raw only
  }
}

struct FieldCount {
  Field field;
  const char* name;
  int count;
};

std::vector<FieldCount> field_counts(const InferTensorContents& c) {
  return {{Field::kBool, "bool_contents", c.bool_contents_size()},
          {Field::kInt, "int_contents", c.int_contents_size()},
          {Field::kInt64, "int64_contents", c.int64_contents_size()},
          {Field::kUInt, "uint_contents", c.uint_contents_size()},
          {Field::kUInt64, "uint64_contents", c.uint64_contents_size()},
          {Field::kFp32, "fp32_contents", c.fp32_contents_size()},
          {Field::kFp64, "fp64_contents", c.fp64_contents_size()},
          {Field::kBytes, "bytes_contents", c.bytes_contents_size()}};
}

// Copies `values` into `t` as T, refusing a value T cannot hold (an int_contents value of 300
// for an INT8 tensor): truncating it would answer a different question than the one asked.
template <typename T, typename Values>
void copy_values(const Values& values, Tensor& t, const std::string& what, const char* field) {
  T* out = t.data<T>();
  for (int i = 0; i < values.size(); ++i) {
    const auto v = values.Get(i);
    if constexpr (std::is_same_v<T, std::remove_cv_t<decltype(v)>>) {
      out[i] = v;
    } else {
      if (!std::in_range<T>(v))
        bad(fmt::format("{}: contents.{}[{}] = {} is out of range for {}", what, field, i, v,
                        kserve_datatype(t.dtype())));
      out[i] = static_cast<T>(v);
    }
  }
}

Tensor from_contents(const InferTensorContents& c, DataType dtype, Shape shape, int64_t numel,
                     const std::string& name, const std::string& what) {
  const Field field = field_of(dtype);
  if (field == Field::kNone)
    bad(fmt::format("{}: datatype {} has no typed contents field: send it in raw_input_contents",
                    what, kserve_datatype(dtype)));
  const char* field_name = nullptr;
  for (const FieldCount& f : field_counts(c)) {
    if (f.field == field) {
      field_name = f.name;
      if (f.count != numel)
        bad(fmt::format("{}: contents.{} has {} values but {} {} needs {}", what, f.name, f.count,
                        kserve_datatype(dtype), shape_str(shape), numel));
    } else if (f.count > 0) {
      bad(fmt::format("{}: contents.{} is set, but datatype {} takes its values in another field",
                      what, f.name, kserve_datatype(dtype)));
    }
  }
  Tensor t(dtype, std::move(shape), name);
  switch (dtype) {
    case DataType::kBool:
      copy_values<bool>(c.bool_contents(), t, what, field_name);
      break;
    case DataType::kInt8:
      copy_values<int8_t>(c.int_contents(), t, what, field_name);
      break;
    case DataType::kInt16:
      copy_values<int16_t>(c.int_contents(), t, what, field_name);
      break;
    case DataType::kInt32:
      copy_values<int32_t>(c.int_contents(), t, what, field_name);
      break;
    case DataType::kInt64:
      copy_values<int64_t>(c.int64_contents(), t, what, field_name);
      break;
    case DataType::kUInt8:
      copy_values<uint8_t>(c.uint_contents(), t, what, field_name);
      break;
    case DataType::kUInt16:
      copy_values<uint16_t>(c.uint_contents(), t, what, field_name);
      break;
    case DataType::kUInt32:
      copy_values<uint32_t>(c.uint_contents(), t, what, field_name);
      break;
    case DataType::kUInt64:
      copy_values<uint64_t>(c.uint64_contents(), t, what, field_name);
      break;
    case DataType::kFloat32:
      copy_values<float>(c.fp32_contents(), t, what, field_name);
      break;
    case DataType::kFloat64:
      copy_values<double>(c.fp64_contents(), t, what, field_name);
      break;
    default:
      bad(fmt::format("{}: datatype {} has no typed contents field", what, kserve_datatype(dtype)));
  }
  return t;
}

Tensor from_raw(const std::string& raw, size_t index, DataType dtype, Shape shape, size_t nbytes,
                const std::string& name, const std::string& what) {
  if (raw.size() != nbytes)
    bad(fmt::format("{}: raw_input_contents[{}] has {} bytes but {} {} takes {}", what, index,
                    raw.size(), kserve_datatype(dtype), shape_str(shape), nbytes));
  if (dtype == DataType::kBool) {
    // Any byte but 0 and 1 is not a bool the kernels can read.
    auto it = std::find_if(raw.begin(), raw.end(), [](char b) { return b != 0 && b != 1; });
    if (it != raw.end())
      bad(fmt::format("{}: BOOL element {} of raw_input_contents[{}] is neither 0 nor 1", what,
                      it - raw.begin(), index));
  }
  return Tensor::copy_of(dtype, std::move(shape), raw.data(), name);
}

void check_parameters(int count, const std::string& what) {
  if (count > 0)
    bad(
        fmt::format("{}: has parameters, but this server supports none there (no shared memory "
                    "or classification extension)",
                    what));
}

}  // namespace

InferRequest parse_grpc_infer_request(const ModelInferRequest& request,
                                      const RequestLimits& limits) {
  InferRequest req;
  if (request.id().size() > 1024) bad("request: 'id' is longer than 1024 characters");
  req.id = request.id();
  if (request.inputs_size() == 0) bad("request: 'inputs' is empty");
  if (static_cast<size_t>(request.inputs_size()) > limits.max_inputs)
    bad(fmt::format("request: {} inputs, more than the {} accepted", request.inputs_size(),
                    limits.max_inputs));
  const bool raw = request.raw_input_contents_size() > 0;
  if (raw && request.raw_input_contents_size() != request.inputs_size())
    bad(fmt::format(
        "request: raw_input_contents has {} entries but there are {} inputs (one each, in order)",
        request.raw_input_contents_size(), request.inputs_size()));

  std::set<std::string> seen;
  for (int i = 0; i < request.inputs_size(); ++i) {
    const ModelInferRequest::InferInputTensor& in = request.inputs(i);
    std::string what = fmt::format("inputs[{}]", i);
    if (in.name().empty() || in.name().size() > 256)
      bad(fmt::format("{}: 'name' must have 1 to 256 characters", what));
    what = fmt::format("input '{}'", in.name());
    if (!seen.insert(in.name()).second) bad(fmt::format("{} is given twice", what));
    const DataType dtype = dtype_from_kserve(in.datatype(), what);
    check_parameters(in.parameters_size(), what);
    if (in.shape_size() > 32) bad(fmt::format("{}: shape has more than 32 dimensions", what));
    Shape shape(in.shape().begin(), in.shape().end());
    for (int64_t d : shape)
      if (d < 0)
        bad(fmt::format("{}: shape {} has a dimension that is not a whole number >= 0", what,
                        shape_str(shape)));
    size_t nbytes = 0;
    int64_t numel = 0;
    try {
      nbytes = checked_nbytes(dtype, shape, what);
      check_tensor_cap(nbytes, limits.max_tensor_bytes, what, shape);
      numel = checked_numel(shape, what);
    } catch (const Error& e) {
      bad(e.what());
    }
    if (raw) {
      if (in.has_contents())
        bad(
            fmt::format("{}: has 'contents' but the request uses raw_input_contents (one or the "
                        "other for every input)",
                        what));
      req.inputs.push_back(from_raw(request.raw_input_contents(i), i, dtype, std::move(shape),
                                    nbytes, in.name(), what));
    } else {
      if (!in.has_contents() && numel > 0)
        bad(fmt::format("{}: has neither 'contents' nor an entry in raw_input_contents", what));
      req.inputs.push_back(
          from_contents(in.contents(), dtype, std::move(shape), numel, in.name(), what));
    }
  }

  if (static_cast<size_t>(request.outputs_size()) > limits.max_outputs)
    bad(fmt::format("request: {} outputs requested, more than the {} accepted",
                    request.outputs_size(), limits.max_outputs));
  std::set<std::string> names;
  for (int i = 0; i < request.outputs_size(); ++i) {
    const ModelInferRequest::InferRequestedOutputTensor& o = request.outputs(i);
    std::string what = fmt::format("outputs[{}]", i);
    if (o.name().empty() || o.name().size() > 256)
      bad(fmt::format("{}: 'name' must have 1 to 256 characters", what));
    check_parameters(o.parameters_size(), fmt::format("output '{}'", o.name()));
    if (!names.insert(o.name()).second)
      bad(fmt::format("output '{}' is requested twice", o.name()));
    req.outputs.push_back({o.name(), true});
  }
  req.binary_output = true;
  return req;
}

void encode_grpc_infer_response(const std::string& model_name, const std::string& version,
                                const std::string& id, const std::vector<OutputRequest>& which,
                                const std::vector<Tensor>& outputs,
                                inference::ModelInferResponse& response) {
  response.Clear();
  response.set_model_name(model_name);
  response.set_model_version(version);
  response.set_id(id);
  for (const OutputRequest& o : which) {
    auto it = std::find_if(outputs.begin(), outputs.end(),
                           [&](const Tensor& t) { return t.name() == o.name; });
    TANDEM_CHECK(it != outputs.end(), ErrorCode::kInternal, "the model returned no output '{}'",
                 quoted(o.name));
    inference::ModelInferResponse::InferOutputTensor* out = response.add_outputs();
    out->set_name(it->name());
    out->set_datatype(kserve_datatype(it->dtype()));
    for (int64_t d : it->shape()) out->add_shape(d);
    response.add_raw_output_contents()->assign(static_cast<const char*>(it->raw()), it->nbytes());
  }
}

void fill_tensor_metadata(
    const std::vector<TensorInfo>& infos,
    google::protobuf::RepeatedPtrField<inference::ModelMetadataResponse::TensorMetadata>& out) {
  for (const TensorInfo& info : infos) {
    inference::ModelMetadataResponse::TensorMetadata* t = out.Add();
    t->set_name(info.name);
    t->set_datatype(kserve_datatype(info.dtype));
    for (int64_t d : info.shape) t->add_shape(d < 0 ? -1 : d);
  }
}

}  // namespace tandem::server

#include "server/kserve.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/checked.h"
#include "core/dtype_visit.h"
#include "core/error.h"
#include "core/half.h"

namespace tandem::server {

namespace {

using json = nlohmann::json;

struct DatatypeName {
  DataType dtype;
  const char* name;
};
constexpr DatatypeName kDatatypes[] = {
    {DataType::kBool, "BOOL"},     {DataType::kUInt8, "UINT8"},   {DataType::kUInt16, "UINT16"},
    {DataType::kUInt32, "UINT32"}, {DataType::kUInt64, "UINT64"}, {DataType::kInt8, "INT8"},
    {DataType::kInt16, "INT16"},   {DataType::kInt32, "INT32"},   {DataType::kInt64, "INT64"},
    {DataType::kFloat16, "FP16"},  {DataType::kFloat32, "FP32"},  {DataType::kFloat64, "FP64"},
    {DataType::kBFloat16, "BF16"},
};

[[noreturn]] void bad(const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, message);
}

// The deepest nesting of arrays and objects in `text`, stopping early past `limit`. nlohmann's
// parser itself is not recursive, but the walks over the parsed value are; bounding the depth
// first keeps a body of 60,000 '[' from reaching them.
int json_depth(std::string_view text, int limit) {
  int depth = 0, worst = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '[' || c == '{') {
      worst = std::max(worst, ++depth);
      if (worst > limit) return worst;
    } else if (c == ']' || c == '}')
      --depth;
  }
  return worst;
}

// Counts the leaves of a (possibly nested) data array; a leaf that is itself an object or a
// nested array too deep was already bounded by json_depth.
int64_t count_leaves(const json& v) {
  if (!v.is_array()) return 1;
  int64_t n = 0;
  for (const json& e : v) n += count_leaves(e);
  return n;
}

// Writes the leaves of `v` (row-major, nested or flat) into `out`, converting each to the
// tensor's dtype with range checks. `i` is the next element's index.
void write_leaves(const json& v, Tensor& out, int64_t& i, const std::string& what) {
  if (v.is_array()) {
    for (const json& e : v) write_leaves(e, out, i, what);
    return;
  }
  const DataType dt = out.dtype();
  const int64_t at = i++;
  auto where = [&] { return fmt::format("{}: element {}", what, at); };
  if (dt == DataType::kBool) {
    if (!v.is_boolean()) bad(fmt::format("{} is not true or false", where()));
    out.data<bool>()[at] = v.get<bool>();
    return;
  }
  if (dt == DataType::kFloat32 || dt == DataType::kFloat64 || dt == DataType::kFloat16 ||
      dt == DataType::kBFloat16) {
    if (!v.is_number()) bad(fmt::format("{} is not a number", where()));
    double x = v.get<double>();
    // A double beyond the target's range converts with undefined behaviour: refuse it.
    if (!std::isfinite(x) ||
        (dt != DataType::kFloat64 &&
         std::fabs(x) > static_cast<double>(std::numeric_limits<float>::max())))
      bad(fmt::format("{} ({}) is out of range for {}", where(), v.dump(), dtype_name(dt)));
    switch (dt) {
      case DataType::kFloat32:
        out.data<float>()[at] = static_cast<float>(x);
        break;
      case DataType::kFloat64:
        out.data<double>()[at] = x;
        break;
      case DataType::kFloat16:
        out.data<uint16_t>()[at] = float_to_half(static_cast<float>(x));
        break;
      default:
        out.data<uint16_t>()[at] = float_to_bfloat16(static_cast<float>(x));
        break;
    }
    return;
  }
  // Integers: a JSON integer within the dtype's range (a fraction or 1e3 is refused).
  if (!v.is_number_integer()) bad(fmt::format("{} is not an integer", where()));
  auto in_range = [&](auto type_tag) {
    using T = decltype(type_tag);
    if (v.is_number_unsigned()) {
      uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        bad(fmt::format("{} ({}) is out of range for {}", where(), u, dtype_name(dt)));
      return static_cast<T>(u);
    }
    int64_t s = v.get<int64_t>();
    if constexpr (std::is_unsigned_v<T>) {
      if (s < 0) bad(fmt::format("{} ({}) is out of range for {}", where(), s, dtype_name(dt)));
      if (static_cast<uint64_t>(s) > static_cast<uint64_t>(std::numeric_limits<T>::max()))
        bad(fmt::format("{} ({}) is out of range for {}", where(), s, dtype_name(dt)));
    } else {
      if (s < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          s > static_cast<int64_t>(std::numeric_limits<T>::max()))
        bad(fmt::format("{} ({}) is out of range for {}", where(), s, dtype_name(dt)));
    }
    return static_cast<T>(s);
  };
  const bool integer =
      visit_dtype<IsInteger>(dt, [&](auto tag) { out.data<decltype(tag)>()[at] = in_range(tag); });
  if (!integer) bad(fmt::format("{}: dtype {} cannot be read from JSON", what, dtype_name(dt)));
}

void check_keys(const json& obj, std::initializer_list<const char*> allowed,
                const std::string& what) {
  for (const auto& [key, value] : obj.items()) {
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (!known) bad(fmt::format("{}: unknown field '{}'", what, key));
  }
}

const json* find(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

std::string get_string(const json& obj, const char* key, const std::string& what, bool required) {
  const json* v = find(obj, key);
  if (!v) {
    if (required) bad(fmt::format("{}: missing field '{}'", what, key));
    return {};
  }
  if (!v->is_string()) bad(fmt::format("{}: '{}' must be a string", what, key));
  return v->get<std::string>();
}

const json* get_parameters(const json& obj, const std::string& what) {
  const json* p = find(obj, "parameters");
  if (p && !p->is_object()) bad(fmt::format("{}: 'parameters' must be an object", what));
  return p;
}

Tensor parse_input(const json& in, size_t index, std::string_view binary, size_t& binary_offset,
                   const RequestLimits& limits) {
  std::string what = fmt::format("inputs[{}]", index);
  if (!in.is_object()) bad(fmt::format("{} must be an object", what));
  check_keys(in, {"name", "shape", "datatype", "parameters", "data"}, what);
  std::string name = get_string(in, "name", what, true);
  if (name.empty() || name.size() > 256)
    bad(fmt::format("{}: 'name' must have 1 to 256 characters", what));
  what = fmt::format("input '{}'", name);
  DataType dtype = dtype_from_kserve(get_string(in, "datatype", what, true), what);

  const json* shape_json = find(in, "shape");
  if (!shape_json || !shape_json->is_array())
    bad(fmt::format("{}: 'shape' must be an array of dimensions", what));
  Shape shape;
  for (const json& d : *shape_json) {
    if (!d.is_number_integer() ||
        (d.is_number_integer() && !d.is_number_unsigned() && d.get<int64_t>() < 0))
      bad(fmt::format("{}: shape {} has a dimension that is not a whole number >= 0", what,
                      shape_json->dump()));
    if (d.is_number_unsigned() &&
        d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      bad(fmt::format("{}: shape dimension {} is too large", what, d.get<uint64_t>()));
    shape.push_back(d.get<int64_t>());
    if (shape.size() > 32) bad(fmt::format("{}: shape has more than 32 dimensions", what));
  }
  size_t nbytes = 0;
  try {
    nbytes = checked_nbytes(dtype, shape, what);
    check_tensor_cap(nbytes, limits.max_tensor_bytes, what, shape);
  } catch (const Error& e) {
    bad(e.what());
  }
  const int64_t numel = shape_numel(shape);

  std::optional<uint64_t> binary_size;
  if (const json* params = get_parameters(in, what)) {
    // An extension this server lacks (shared memory regions...) must not be ignored silently.
    check_keys(*params, {"binary_data_size"}, what + " parameters");
    if (const json* b = find(*params, "binary_data_size")) {
      if (!b->is_number_unsigned())
        bad(fmt::format("{}: parameter 'binary_data_size' must be a whole number >= 0", what));
      binary_size = b->get<uint64_t>();
    }
  }
  const json* data = find(in, "data");
  if (binary_size) {
    if (data) bad(fmt::format("{}: has both 'data' and binary_data_size", what));
    if (*binary_size != nbytes)
      bad(fmt::format("{}: binary_data_size is {} but {} {} takes {} bytes", what, *binary_size,
                      dtype_name(dtype), shape_str(shape), nbytes));
    if (binary.size() - binary_offset < nbytes)
      bad(
          fmt::format("{}: binary_data_size {} runs past the end of the body ({} binary bytes "
                      "left)",
                      what, nbytes, binary.size() - binary_offset));
    Tensor t = Tensor::copy_of(dtype, shape, binary.data() + binary_offset, name);
    binary_offset += nbytes;
    if (dtype == DataType::kBool) {
      const auto* bytes = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < nbytes; ++i)
        if (bytes[i] > 1) bad(fmt::format("{}: BOOL element {} is neither 0 nor 1", what, i));
    }
    return t;
  }
  if (!data) bad(fmt::format("{}: missing 'data' (or parameter binary_data_size)", what));
  if (!data->is_array()) bad(fmt::format("{}: 'data' must be an array", what));
  const int64_t leaves = count_leaves(*data);
  if (leaves != numel)
    bad(fmt::format("{}: 'data' has {} elements but shape {} needs {}", what, leaves,
                    shape_str(shape), numel));
  Tensor t(dtype, shape, name);
  int64_t i = 0;
  write_leaves(*data, t, i, what);
  return t;
}

template <typename T>
void append_values(json& out, const Tensor& t) {
  const T* p = t.data<T>();
  for (int64_t i = 0; i < t.numel(); ++i) out.push_back(p[i]);
}

json tensor_data_json(const Tensor& t) {
  json data = json::array();
  auto& arr = data.get_ref<json::array_t&>();
  arr.reserve(static_cast<size_t>(t.numel()));
  if (visit_dtype(t.dtype(), [&](auto tag) { append_values<decltype(tag)>(data, t); })) return data;
  const bool bf = t.dtype() == DataType::kBFloat16;
  TANDEM_CHECK(bf || t.dtype() == DataType::kFloat16, ErrorCode::kUnsupported,
               "output '{}' has dtype {}, which KServe v2 cannot carry", t.name(),
               dtype_name(t.dtype()));
  const uint16_t* bits = t.data<uint16_t>();
  for (int64_t i = 0; i < t.numel(); ++i)
    data.push_back(bf ? bfloat16_to_float(bits[i]) : half_to_float(bits[i]));
  return data;
}

}  // namespace

const char* kserve_datatype(DataType dtype) {
  for (const auto& d : kDatatypes)
    if (d.dtype == dtype) return d.name;
  raise(ErrorCode::kUnsupported, "dtype {} has no KServe v2 datatype", dtype_name(dtype));
}

DataType dtype_from_kserve(std::string_view name, std::string_view what) {
  for (const auto& d : kDatatypes)
    if (name == d.name) return d.dtype;
  if (name == "BYTES") bad(fmt::format("{}: datatype BYTES is not supported", what));
  bad(fmt::format("{}: unknown datatype '{}'", what, std::string(name.substr(0, 64))));
}

uint64_t parse_header_length(std::string_view text) {
  if (text.empty() || text.size() > 19)
    bad(fmt::format("Inference-Header-Content-Length '{}' is not a byte count",
                    std::string(text.substr(0, 32))));
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      bad(fmt::format("Inference-Header-Content-Length '{}' is not a byte count",
                      std::string(text.substr(0, 32))));
    v = v * 10 + static_cast<uint64_t>(c - '0');  // 19 digits fit in 64 bits
  }
  return v;
}

InferRequest parse_infer_request(std::string_view body, std::optional<uint64_t> json_length,
                                 const RequestLimits& limits) {
  std::string_view header = body, binary;
  if (json_length) {
    if (*json_length > body.size())
      bad(fmt::format("Inference-Header-Content-Length {} is larger than the body ({} bytes)",
                      *json_length, body.size()));
    header = body.substr(0, *json_length);
    binary = body.substr(*json_length);
  }
  if (header.size() > limits.max_json_bytes)
    bad(
        fmt::format("the request's JSON is {} bytes, more than the {} accepted: send large "
                    "tensors as binary data (Inference-Header-Content-Length)",
                    header.size(), limits.max_json_bytes));
  if (json_depth(header, limits.max_json_depth) > limits.max_json_depth)
    bad(fmt::format("request JSON is nested deeper than {} levels", limits.max_json_depth));
  json doc;
  try {
    doc = json::parse(header.begin(), header.end());
  } catch (const json::exception& e) {
    bad(fmt::format("request is not valid JSON: {}", e.what()));
  }
  if (!doc.is_object()) bad("request must be a JSON object");
  check_keys(doc, {"id", "parameters", "inputs", "outputs"}, "request");

  InferRequest req;
  req.id = get_string(doc, "id", "request", false);
  if (req.id.size() > 1024) bad("request: 'id' is longer than 1024 characters");
  if (const json* params = get_parameters(doc, "request")) {
    if (const json* b = find(*params, "binary_data_output")) {
      if (!b->is_boolean()) bad("request: parameter 'binary_data_output' must be true or false");
      req.binary_output = b->get<bool>();
    }
  }
  const json* inputs = find(doc, "inputs");
  if (!inputs || !inputs->is_array() || inputs->empty())
    bad("request: 'inputs' must be a non-empty array");
  if (inputs->size() > limits.max_inputs)
    bad(fmt::format("request: more than {} inputs", limits.max_inputs));
  size_t offset = 0;
  std::set<std::string> seen;
  for (size_t i = 0; i < inputs->size(); ++i) {
    Tensor t = parse_input((*inputs)[i], i, binary, offset, limits);
    if (!seen.insert(t.name()).second) bad(fmt::format("input '{}' is given twice", t.name()));
    req.inputs.push_back(std::move(t));
  }
  if (offset != binary.size())
    bad(
        fmt::format("{} bytes of binary data follow the JSON but the inputs' binary_data_size "
                    "add up to {}",
                    binary.size(), offset));

  if (const json* outputs = find(doc, "outputs")) {
    if (!outputs->is_array()) bad("request: 'outputs' must be an array");
    if (outputs->size() > limits.max_outputs)
      bad(fmt::format("request: more than {} outputs", limits.max_outputs));
    std::set<std::string> names;
    for (size_t i = 0; i < outputs->size(); ++i) {
      const json& o = (*outputs)[i];
      std::string what = fmt::format("outputs[{}]", i);
      if (!o.is_object()) bad(fmt::format("{} must be an object", what));
      check_keys(o, {"name", "parameters"}, what);
      OutputRequest out;
      out.name = get_string(o, "name", what, true);
      if (out.name.empty() || out.name.size() > 256)
        bad(fmt::format("{}: 'name' must have 1 to 256 characters", what));
      out.binary = req.binary_output;
      if (const json* params = get_parameters(o, what)) {
        check_keys(*params, {"binary_data"}, what + " parameters");  // no classification
        if (const json* b = find(*params, "binary_data")) {
          if (!b->is_boolean())
            bad(fmt::format("{}: parameter 'binary_data' must be true or false", what));
          out.binary = b->get<bool>();
        }
      }
      if (!names.insert(out.name).second)
        bad(fmt::format("output '{}' is requested twice", out.name));
      req.outputs.push_back(std::move(out));
    }
  }
  return req;
}

std::vector<Tensor> match_inputs(const std::vector<TensorInfo>& model_inputs,
                                 std::vector<Tensor> inputs) {
  std::vector<Tensor> ordered;
  ordered.reserve(model_inputs.size());
  std::map<std::string, std::pair<int64_t, std::string>> sizes;  // symbol -> size, first input
  for (const TensorInfo& info : model_inputs) {
    auto it = std::find_if(inputs.begin(), inputs.end(),
                           [&](const Tensor& t) { return t.name() == info.name; });
    if (it == inputs.end())
      bad(fmt::format("input '{}' ({} {}) is missing", info.name, kserve_datatype(info.dtype),
                      declared_shape_str(info)));
    if (it->dtype() != info.dtype)
      bad(fmt::format("input '{}' has datatype {} but the model takes {}", info.name,
                      kserve_datatype(it->dtype()), kserve_datatype(info.dtype)));
    bool fits = it->rank() == info.shape.size();
    for (size_t d = 0; fits && d < info.shape.size(); ++d)
      fits = info.shape[d] < 0 ? it->dim(d) > 0 : it->dim(d) == info.shape[d];
    if (!fits)
      bad(fmt::format("input '{}' has shape {} but the model takes {}", info.name,
                      shape_str(it->shape()), declared_shape_str(info)));
    // A named symbolic dim ("sequence") takes one size across all inputs: the model would
    // refuse a mismatch only deep inside a kernel.
    for (size_t d = 0; d < info.shape.size() && d < info.dim_names.size(); ++d) {
      const std::string& symbol = info.dim_names[d];
      if (info.shape[d] >= 0 || symbol.empty() || symbol == "?") continue;
      auto [seen, fresh] = sizes.emplace(symbol, std::make_pair(it->dim(d), info.name));
      if (!fresh && seen->second.first != it->dim(d))
        bad(fmt::format("input '{}' has {} = {} but input '{}' has {} = {}", info.name, symbol,
                        it->dim(d), seen->second.second, symbol, seen->second.first));
    }
    ordered.push_back(std::move(*it));
    inputs.erase(it);
  }
  if (!inputs.empty()) bad(fmt::format("the model has no input '{}'", inputs.front().name()));
  return ordered;
}

std::vector<OutputRequest> resolve_outputs(const std::vector<TensorInfo>& model_outputs,
                                           const InferRequest& request) {
  if (request.outputs.empty()) {
    std::vector<OutputRequest> all;
    for (const TensorInfo& info : model_outputs) all.push_back({info.name, request.binary_output});
    return all;
  }
  for (const OutputRequest& o : request.outputs) {
    bool known = std::any_of(model_outputs.begin(), model_outputs.end(),
                             [&](const TensorInfo& info) { return info.name == o.name; });
    if (!known) bad(fmt::format("the model has no output '{}'", o.name));
  }
  return request.outputs;
}

EncodedBody encode_infer_response(const std::string& model_name, const std::string& version,
                                  const std::string& id, const std::vector<OutputRequest>& which,
                                  const std::vector<Tensor>& outputs) {
  json doc;
  doc["model_name"] = model_name;
  doc["model_version"] = version;
  if (!id.empty()) doc["id"] = id;
  json outs = json::array();
  std::vector<const Tensor*> binary;
  for (const OutputRequest& o : which) {
    auto it = std::find_if(outputs.begin(), outputs.end(),
                           [&](const Tensor& t) { return t.name() == o.name; });
    TANDEM_CHECK(it != outputs.end(), ErrorCode::kInternal, "the model returned no output '{}'",
                 o.name);
    json out;
    out["name"] = it->name();
    out["datatype"] = kserve_datatype(it->dtype());
    out["shape"] = it->shape();
    if (o.binary) {
      out["parameters"] = {{"binary_data_size", it->nbytes()}};
      binary.push_back(&*it);
    } else {
      out["data"] = tensor_data_json(*it);
    }
    outs.push_back(std::move(out));
  }
  doc["outputs"] = std::move(outs);
  EncodedBody r;
  r.body = doc.dump(-1, ' ', false, json::error_handler_t::replace);
  if (binary.empty()) {
    r.content_type = "application/json";
    return r;
  }
  r.json_length = r.body.size();
  r.content_type = "application/octet-stream";
  for (const Tensor* t : binary) r.body.append(static_cast<const char*>(t->raw()), t->nbytes());
  return r;
}

std::string error_body(std::string_view message) {
  json doc;
  doc["error"] = std::string(message);
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace tandem::server

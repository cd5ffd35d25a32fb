// The KServe v2 (Open Inference Protocol) HTTP/REST request and response bodies: JSON tensors and
// the binary tensor data extension (a JSON header of Inference-Header-Content-Length bytes, then
// each binary tensor's bytes in order). Pure functions over bytes, so the parser can be fuzzed
// without a server (tests/fuzz/fuzz_kserve_request.cc).
//
// Everything here reads untrusted bytes: every field is type-checked, sizes are computed with
// overflow checks and capped, nesting depth is bounded, and each failure is a tandem::Error of
// code kInvalidArgument whose message names the field (the server answers it with 400).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/tensor.h"

namespace tandem::server {

// "FP32", "INT64", "BOOL", ... for a dtype; throws for a dtype the protocol cannot carry.
const char* kserve_datatype(DataType dtype);
// The reverse; throws kInvalidArgument naming `what` for an unknown or unsupported name (BYTES:
// the engine has no string tensors).
DataType dtype_from_kserve(std::string_view name, std::string_view what);

struct RequestLimits {
  // Per input tensor, after decoding (JSON numbers take more room than their values).
  size_t max_tensor_bytes = size_t{256} << 20;
  size_t max_inputs = 256;
  size_t max_outputs = 256;
  // Nesting of JSON arrays and objects. A request needs about rank + 4.
  int max_json_depth = 48;
  // The JSON part of a request. Parsed, JSON takes about 16 bytes per number: a larger tensor
  // should come as binary data (the binary tensor data extension), which is copied once.
  size_t max_json_bytes = size_t{16} << 20;
};

struct OutputRequest {
  std::string name;
  bool binary = false;
};

struct InferRequest {
  std::string id;
  std::vector<Tensor> inputs;          // named, in request order
  std::vector<OutputRequest> outputs;  // as requested; empty: every output
  bool binary_output = false;          // the request parameter binary_data_output
};

// Parses the value of an Inference-Header-Content-Length header: decimal digits only.
uint64_t parse_header_length(std::string_view text);

// Parses an infer request body. `json_length`: the Inference-Header-Content-Length header's
// value when present (the body's first json_length bytes are JSON, the rest binary tensor data);
// absent, the whole body is JSON.
InferRequest parse_infer_request(std::string_view body, std::optional<uint64_t> json_length,
                                 const RequestLimits& limits = {});

// Checks the request's inputs against the model's: every model input exactly once, by name,
// with its dtype, rank and fixed dims. Returns them in the model's input order.
std::vector<Tensor> match_inputs(const std::vector<TensorInfo>& model_inputs,
                                 std::vector<Tensor> inputs);

// The outputs to return, in order: those requested (each a model output, named once) or, when
// none are, every model output. `binary` is the request's choice, or binary_data_output.
std::vector<OutputRequest> resolve_outputs(const std::vector<TensorInfo>& model_outputs,
                                           const InferRequest& request);

struct EncodedBody {
  std::string body;
  std::string content_type;
  // Set when binary outputs follow the JSON: the value of Inference-Header-Content-Length.
  std::optional<size_t> json_length;
};

// The infer response: `outputs` are the model's outputs in model order (named); `which` picks
// and orders them. JSON numbers for JSON outputs (NaN and infinities become null, as JSON has no
// such numbers), raw little-endian bytes for binary ones.
EncodedBody encode_infer_response(const std::string& model_name, const std::string& version,
                                  const std::string& id, const std::vector<OutputRequest>& which,
                                  const std::vector<Tensor>& outputs);

// {"error": message}, the protocol's error object.
std::string error_body(std::string_view message);

}  // namespace tandem::server

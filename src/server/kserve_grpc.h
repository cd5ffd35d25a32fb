// The KServe v2 (Open Inference Protocol) gRPC infer messages (grpc_predict_v2.proto) to and from
// tensors. Pure functions over protobuf messages, so the conversion can be fuzzed without a
// server (tests/fuzz/fuzz_kserve_grpc_request.cc); the service itself is grpc_frontend.cc.
//
// A request comes from the network: every field is checked, sizes are computed with overflow
// checks and capped by the same RequestLimits as the HTTP/REST bodies (kserve.h), and each
// failure is a tandem::Error of code kInvalidArgument whose message names the field (the
// frontend answers it with INVALID_ARGUMENT).
#pragma once

#include <string>
#include <vector>

#include "server/grpc_predict_v2.pb.h"
#include "server/kserve.h"
#include "tandem/tensor.h"

namespace tandem::server {

// The request's id, its inputs (named, in request order) and its requested outputs (empty:
// every output). Each input's elements come either from its typed `contents` field (the one of
// its datatype: fp32_contents for FP32, int_contents for INT8/INT16/INT32, ...) or, for every
// input at once, from raw_input_contents (flat little-endian bytes, one entry per input);
// never both. FP16 and BF16 only come raw, as the protocol has no field for them; BYTES is
// refused (the engine has no string tensors). Parameters of inputs and outputs name protocol
// extensions this server lacks (shared memory, classification) and are refused; the request's
// own parameters are ignored, as over HTTP.
InferRequest parse_grpc_infer_request(const inference::ModelInferRequest& request,
                                      const RequestLimits& limits = {});

// The infer response: `outputs` are the model's outputs (named); `which` picks and orders them.
// Every output goes in raw_output_contents (flat little-endian bytes, as Triton answers), its
// name, datatype and shape in `outputs`; typed `contents` are never set.
void encode_grpc_infer_response(const std::string& model_name, const std::string& version,
                                const std::string& id, const std::vector<OutputRequest>& which,
                                const std::vector<Tensor>& outputs,
                                inference::ModelInferResponse& response);

// The metadata of a model's tensors: symbolic dims are -1, as the protocol says.
void fill_tensor_metadata(
    const std::vector<TensorInfo>& infos,
    google::protobuf::RepeatedPtrField<inference::ModelMetadataResponse::TensorMetadata>& out);

}  // namespace tandem::server

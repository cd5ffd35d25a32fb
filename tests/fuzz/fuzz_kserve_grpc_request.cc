// A KServe v2 gRPC ModelInferRequest (grpc_predict_v2.proto) as it arrives off the wire: parsed
// by protobuf, converted to tensors (typed or raw contents), matched against a model's inputs and
// outputs and the response encoded, the path every gRPC infer call takes before it reaches a
// model (src/server/kserve_grpc.h). Seeds: tests/fuzz/corpus/fuzz_kserve_grpc_request/, written
// with `protoc --encode=inference.ModelInferRequest`.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "server/kserve_grpc.h"
#include "tandem/status.h"

namespace {

tandem::TensorInfo info(const char* name, tandem::DataType dtype, tandem::Shape shape,
                        std::vector<std::string> dim_names = {}) {
  tandem::TensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.dim_names = std::move(dim_names);
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  inference::ModelInferRequest request;
  // Bytes protobuf refuses never reach the conversion (grpc answers INTERNAL for them).
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  // The same model as fuzz_kserve_request's: a batched float input, an unbatched one, integers
  // and booleans; the outputs have the inputs' names, so the matched inputs stand in for them.
  const std::vector<TensorInfo> model = {
      info("x", DataType::kFloat32, {-1, 2, 3}, {"batch", "", ""}),
      info("t", DataType::kFloat32, {1}), info("ids", DataType::kInt64, {-1, -1}, {"batch", "?"}),
      info("m", DataType::kBool, {-1}, {"batch"})};
  server::RequestLimits limits;
  limits.max_tensor_bytes = size_t{1} << 20;
  try {
    server::InferRequest parsed = server::parse_grpc_infer_request(request, limits);
    std::vector<server::OutputRequest> which = server::resolve_outputs(model, parsed);
    std::vector<Tensor> inputs = server::match_inputs(model, std::move(parsed.inputs));
    inference::ModelInferResponse response;
    server::encode_grpc_infer_response(request.model_name(), "1", parsed.id, which, inputs,
                                       response);
    std::string wire;
    (void)response.SerializeToString(&wire);
  } catch (const Error&) {
    // Refused with a message: fine. Anything else escaping is a finding.
  }
  return 0;
}

// A KServe v2 infer request body -> parsed, matched against a model's inputs and outputs, and the
// response encoded: the path every request to `tandem serve` takes before it reaches a model.
// The first byte picks the framing: bit 0 set, the body carries binary tensor data after a JSON
// header whose length is the next two bytes (little-endian, capped at the body's size), as the
// Inference-Header-Content-Length header would say.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/kserve.h"
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
  if (size < 3) return 0;
  const bool binary = data[0] & 1;
  const size_t header = static_cast<size_t>(data[1]) | static_cast<size_t>(data[2]) << 8;
  std::string_view body(reinterpret_cast<const char*>(data + 3), size - 3);
  std::optional<uint64_t> json_length;
  if (binary) json_length = std::min(header, body.size());
  // A model with a batched float input, an unbatched one, integers and booleans; its outputs
  // have the same names, so the matched inputs can stand in for the outputs.
  // Named symbolic dims tie the batch of x, ids and m together.
  const std::vector<TensorInfo> model = {
      info("x", DataType::kFloat32, {-1, 2, 3}, {"batch", "", ""}),
      info("t", DataType::kFloat32, {1}), info("ids", DataType::kInt64, {-1, -1}, {"batch", "?"}),
      info("m", DataType::kBool, {-1}, {"batch"})};
  server::RequestLimits limits;
  limits.max_tensor_bytes = size_t{1} << 20;
  try {
    if (data[0] & 2) (void)server::parse_header_length(body.substr(0, 24));
    server::InferRequest request = server::parse_infer_request(body, json_length, limits);
    std::vector<server::OutputRequest> which = server::resolve_outputs(model, request);
    std::vector<Tensor> inputs = server::match_inputs(model, std::move(request.inputs));
    server::EncodedBody out = server::encode_infer_response("m", "1", request.id, which, inputs);
    (void)out;
  } catch (const Error&) {
    // Refused with a message: fine. Anything else escaping is a finding.
  }
  return 0;
}

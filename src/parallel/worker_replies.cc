#include "parallel/worker_replies.h"

namespace tandem::parallel {

nlohmann::json build_description(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    throw ProtocolViolation(fmt::format("malformed BUILD_FINISH: {}", e.what()));
  }
  require(j.is_object() && j.contains("inputs") && j.contains("outputs"),
          "malformed BUILD_FINISH: it lacks inputs or outputs");
  j.erase("pid");
  tensor_infos(j.at("inputs"), "inputs");
  tensor_infos(j.at("outputs"), "outputs");
  return j;
}

std::vector<TensorInfo> tensor_infos(const nlohmann::json& list, const char* what) {
  require(list.is_array() && list.size() <= kMaxTensorsPerMessage,
          "malformed BUILD_FINISH: {} is not a list of at most {} tensors", what,
          kMaxTensorsPerMessage);
  std::vector<TensorInfo> out;
  for (const auto& j : list) {
    TensorInfo i;
    try {
      i.name = j.at("name").get<std::string>();
      i.dtype = static_cast<DataType>(j.at("dtype").get<int32_t>());
      i.shape = j.at("shape").get<Shape>();
      i.dim_names = j.at("dim_names").get<std::vector<std::string>>();
    } catch (const std::exception& e) {
      throw ProtocolViolation(
          fmt::format("malformed BUILD_FINISH: {}[{}]: {}", what, out.size(), e.what()));
    }
    require(dtype_size(i.dtype) > 0, "BUILD_FINISH: {} '{}' has dtype {}, which is not a tensor's",
            what, i.name, static_cast<int>(i.dtype));
    require(i.shape.size() <= kMaxRank && i.dim_names.size() == i.shape.size(),
            "BUILD_FINISH: {} '{}' has rank {} and {} dim names", what, i.name, i.shape.size(),
            i.dim_names.size());
    for (int64_t d : i.shape) require(d >= -1, "BUILD_FINISH: {} '{}' has dim {}", what, i.name, d);
    out.push_back(std::move(i));
  }
  return out;
}

void check_shapes_reply(const Message& m, const std::vector<TensorInfo>& outputs) {
  require(m.fds.empty(), "a SHAPES reply carries {} descriptors", m.fds.size());
  if (m.text == kDynamicOutputs) {
    require(m.outputs.empty(), "a dynamic-outputs SHAPES reply lists {} outputs", m.outputs.size());
    return;
  }
  require(m.text.empty(), "a SHAPES reply carries text");
  require(m.outputs.size() == outputs.size(), "a SHAPES reply lists {} outputs, the model has {}",
          m.outputs.size(), outputs.size());
  for (size_t o = 0; o < outputs.size(); ++o) {
    const TensorInfo& want = outputs[o];
    const TensorDesc& got = m.outputs[o];
    require(got.dtype == want.dtype, "output '{}' reported as {}, the model declares {}", want.name,
            dtype_name(got.dtype), dtype_name(want.dtype));
    if (want.shape.empty()) continue;  // rank not declared
    require(got.shape.size() == want.shape.size(), "output '{}' reported with rank {}, declared {}",
            want.name, got.shape.size(), want.shape.size());
    for (size_t k = 1; k < want.shape.size(); ++k)
      require(want.shape[k] < 0 || got.shape[k] == want.shape[k],
              "output '{}' reported as {}, declared {}", want.name, shape_str(got.shape),
              shape_str(want.shape));
  }
}

void check_spilled_reply(const Message& m, const std::vector<TensorInfo>& outputs,
                         uint64_t buffer_bytes) {
  require(m.outputs.size() == outputs.size(), "a reply lists {} outputs, the model has {}",
          m.outputs.size(), outputs.size());
  for (size_t o = 0; o < outputs.size(); ++o) {
    const TensorDesc& d = m.outputs[o];
    require(d.dtype == outputs[o].dtype, "output '{}' returned as {}, the model declares {}",
            outputs[o].name, dtype_name(d.dtype), dtype_name(outputs[o].dtype));
    uint64_t bytes = tensor_bytes(d.dtype, d.shape);
    require(d.offset <= buffer_bytes && bytes <= buffer_bytes - d.offset,
            "output '{}' at offset {} ({} bytes) overruns the {}-byte buffer it came in",
            outputs[o].name, d.offset, bytes, buffer_bytes);
  }
}

}  // namespace tandem::parallel

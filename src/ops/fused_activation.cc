#include "ops/fused_activation.h"

#include <limits>
#include <vector>

#include "core/error.h"
#include "ops/activation.h"

namespace tandem {

namespace {
struct Entry {
  ActivationKind kind;
  const char* name;
  std::vector<float> defaults;  // the parameters, with their defaults
};

const std::vector<Entry>& entries() {
  static const std::vector<Entry> table = {
      {ActivationKind::kNone, "", {}},
      {ActivationKind::kRelu, "Relu", {}},
      {ActivationKind::kLeakyRelu, "LeakyRelu", {0.01f}},
      {ActivationKind::kClip,
       "Clip",
       {-std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity()}},
      {ActivationKind::kSigmoid, "Sigmoid", {}},
      {ActivationKind::kHardSigmoid, "HardSigmoid", {0.2f, 0.5f}},
      {ActivationKind::kHardSwish, "HardSwish", {}},
      {ActivationKind::kTanh, "Tanh", {}},
      {ActivationKind::kSiLU, "SiLU", {}},
  };
  return table;
}
}  // namespace

FusedActivation read_fused_activation(const Node& node) {
  const std::string name = node.attr_string_or("activation", "");
  const std::vector<float> params = node.attr_floats_or("activation_params", {});
  for (const Entry& e : entries()) {
    if (name != e.name) continue;
    TANDEM_CHECK(params.empty() || params.size() == e.defaults.size(), ErrorCode::kInvalidModel,
                 "{}: activation '{}' takes {} activation_params, got {}", node.describe(), name,
                 e.defaults.size(), params.size());
    const std::vector<float>& p = params.empty() ? e.defaults : params;
    FusedActivation a;
    a.kind = e.kind;
    if (p.size() > 0) a.alpha = p[0];
    if (p.size() > 1) a.beta = p[1];
    return a;
  }
  raise(ErrorCode::kInvalidModel, "{}: unknown activation '{}'", node.describe(), name);
}

const char* activation_name(ActivationKind kind) {
  for (const Entry& e : entries())
    if (e.kind == kind) return e.name;
  return "";
}

void set_fused_activation(Node& node, const FusedActivation& act) {
  node.attrs.erase("activation");
  node.attrs.erase("activation_params");
  if (act.kind == ActivationKind::kNone) return;
  Attribute name;
  name.kind = Attribute::Kind::kString;
  name.s = activation_name(act.kind);
  node.attrs["activation"] = name;
  size_t count = 0;
  for (const Entry& e : entries())
    if (e.kind == act.kind) count = e.defaults.size();
  if (count == 0) return;
  Attribute params;
  params.kind = Attribute::Kind::kFloats;
  params.floats = {act.alpha, act.beta};
  params.floats.resize(count);
  node.attrs["activation_params"] = params;
}

bool static_clip_bounds(const Node& node, float& lo, float& hi) {
  lo = -std::numeric_limits<float>::infinity();
  hi = std::numeric_limits<float>::infinity();
  if (node.opset < 11) {
    const ActivationAttrs a = ActivationAttrs::parse(node);
    lo = a.clip_min;
    hi = a.clip_max;
  } else {
    for (size_t i = 1; i <= 2; ++i) {
      if (!node.has_input(i)) continue;
      const Value* v = node.inputs[i];
      if (!v || !v->is_constant() || v->constant->dtype() != DataType::kFloat32 ||
          v->constant->numel() != 1)
        return false;
      (i == 1 ? lo : hi) = v->constant->data<float>()[0];
    }
  }
  return !std::isnan(lo) && !std::isnan(hi);
}

}  // namespace tandem

// Schemas of the recurrent family: RNN, GRU, LSTM (opset 7+; layout attribute from 14).
// Layout 0: X [seq, batch, input], Y [seq, dirs, batch, hidden], Y_h/Y_c [dirs, batch, hidden].
// Layout 1: X [batch, seq, input], Y [batch, seq, dirs, hidden], Y_h/Y_c [batch, dirs, hidden].
#include "ops/recurrent.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/checked.h"
#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

int64_t gates_of(const std::string& op) {
  return op == "LSTM" ? 4 : op == "GRU" ? 3 : 1;
}

void check_shape(const InferContext& ctx, size_t i, const char* what, const Shape& want) {
  if (!ctx.has_input(i)) return;
  const TensorType& t = ctx.input(i);
  TANDEM_CHECK(t.shape == want, ErrorCode::kInvalidArgument, "{}: {} has shape {}, expected {}",
               ctx.node.describe(), what, shape_str(t.shape), shape_str(want));
  if (i != 4) {  // sequence_lens is int32; everything else has X's dtype
    TANDEM_CHECK(t.dtype == ctx.input(0).dtype, ErrorCode::kInvalidModel,
                 "{}: {} is {} but X is {}", ctx.node.describe(), what, dtype_name(t.dtype),
                 dtype_name(ctx.input(0).dtype));
  }
}

std::vector<TensorType> infer_recurrent(const InferContext& ctx, const RecurrentAttrs& a) {
  const Node& node = ctx.node;
  TANDEM_CHECK(node.opset >= 7, ErrorCode::kUnsupported,
               "{}: {} before opset 7 is not supported (opset {})", node.describe(), node.op_type,
               node.opset);
  const TensorType& x = ctx.float_input(0);
  TANDEM_CHECK(x.shape.size() == 3, ErrorCode::kInvalidArgument,
               "{}: X must have rank 3, got shape {}", node.describe(), shape_str(x.shape));
  const int64_t layout = a.layout, dirs = a.dirs;
  const int64_t seq = x.shape[layout == 0 ? 0 : 1], batch = x.shape[layout == 0 ? 1 : 0];
  const int64_t in = x.shape[2], g = gates_of(node.op_type);
  const Shape& r = ctx.input(2).shape;
  const int64_t hidden = a.hidden_size >= 0 ? a.hidden_size : r.size() == 3 ? r[2] : -1;
  TANDEM_CHECK(hidden > 0, ErrorCode::kInvalidModel, "{}: hidden_size {} must be positive",
               node.describe(), hidden);
  // hidden_size is an attribute from the file: the gate rows must not wrap.
  const int64_t rows = checked_mul(g, hidden, node.describe());
  check_shape(ctx, 1, "W", {dirs, rows, in});
  check_shape(ctx, 2, "R", {dirs, rows, hidden});
  check_shape(ctx, 3, "B", {dirs, checked_mul(2, rows, node.describe())});
  check_shape(ctx, 4, "sequence_lens", {batch});
  const Shape state = layout == 0 ? Shape{dirs, batch, hidden} : Shape{batch, dirs, hidden};
  check_shape(ctx, 5, "initial_h", state);
  if (node.op_type == "LSTM") {
    check_shape(ctx, 6, "initial_c", state);
    check_shape(ctx, 7, "P", {dirs, 3 * hidden});
  }
  const Shape y = layout == 0 ? Shape{seq, dirs, batch, hidden} : Shape{batch, seq, dirs, hidden};
  std::vector<TensorType> out = {{x.dtype, y}, {x.dtype, state}};
  if (node.op_type == "LSTM") out.push_back({x.dtype, state});
  return out;
}

}  // namespace

RecurrentAttrs RecurrentAttrs::parse(const Node& node) {
  RecurrentAttrs a;
  a.layout = node.attr_int_or("layout", 0);
  TANDEM_CHECK(a.layout == 0 || a.layout == 1, ErrorCode::kInvalidModel,
               "{}: layout {} must be 0 or 1", node.describe(), a.layout);
  const std::string dir = node.attr_string_or("direction", "forward");
  TANDEM_CHECK(dir == "forward" || dir == "reverse" || dir == "bidirectional",
               ErrorCode::kInvalidModel, "{}: unknown direction '{}'", node.describe(), dir);
  a.dirs = dir == "bidirectional" ? 2 : 1;
  a.reverse_only = dir == "reverse";
  a.hidden_size = node.attr_int_or("hidden_size", -1);
  a.clip = node.attr_float_or("clip", 0.0f);
  a.linear_before_reset = node.attr_int_or("linear_before_reset", 0) != 0;
  a.input_forget = node.attr_int_or("input_forget", 0) != 0;
  a.activations = read_recurrent_activations(
      node, a.dirs,
      node.op_type == "LSTM"  ? std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"}
      : node.op_type == "GRU" ? std::vector<std::string>{"Sigmoid", "Tanh"}
                              : std::vector<std::string>{"Tanh"});
  return a;
}

double RecurrentActivation::operator()(double x) const {
  if (name == "sigmoid") return 1 / (1 + std::exp(-x));
  if (name == "tanh") return std::tanh(x);
  if (name == "relu") return std::max(x, 0.0);
  if (name == "affine") return alpha * x + beta;
  if (name == "leakyrelu") return x >= 0 ? x : alpha * x;
  if (name == "thresholdedrelu") return x > alpha ? x : 0;
  if (name == "scaledtanh") return alpha * std::tanh(beta * x);
  if (name == "hardsigmoid") return std::clamp(alpha * x + beta, 0.0, 1.0);
  if (name == "elu") return x >= 0 ? x : alpha * (std::exp(x) - 1);
  if (name == "softsign") return x / (1 + std::abs(x));
  return std::log1p(std::exp(x));  // softplus
}

std::vector<RecurrentActivation> read_recurrent_activations(const Node& node, int64_t dirs,
                                                            std::vector<std::string> dflt) {
  std::vector<std::string> names = node.attr_strings_or("activations", {});
  const size_t per_dir = dflt.size();
  if (names.empty()) {
    for (int64_t d = 0; d < dirs; ++d) names.insert(names.end(), dflt.begin(), dflt.end());
  }
  TANDEM_CHECK(names.size() == per_dir * static_cast<size_t>(dirs), ErrorCode::kInvalidModel,
               "{}: {} activations given, expected {} per direction", node.describe(), names.size(),
               per_dir);
  std::vector<float> alphas = node.attr_floats_or("activation_alpha", {});
  std::vector<float> betas = node.attr_floats_or("activation_beta", {});
  size_t ai = 0, bi = 0;
  std::vector<RecurrentActivation> acts;
  for (const std::string& n : names) {
    RecurrentActivation a;
    for (char ch : n) a.name += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    double da = 0, db = 0;
    bool uses_alpha = true, uses_beta = false;
    if (a.name == "affine" || a.name == "scaledtanh") {
      da = 1, db = a.name == "affine" ? 0 : 1, uses_beta = true;
    } else if (a.name == "hardsigmoid") {
      da = 0.2, db = 0.5, uses_beta = true;
    } else if (a.name == "leakyrelu") {
      da = 0.01;
    } else if (a.name == "thresholdedrelu" || a.name == "elu") {
      da = 1;
    } else {
      TANDEM_CHECK(a.name == "sigmoid" || a.name == "tanh" || a.name == "relu" ||
                       a.name == "softsign" || a.name == "softplus",
                   ErrorCode::kUnsupported, "{}: activation '{}' is not supported", node.describe(),
                   n);
      uses_alpha = false;
    }
    a.alpha = uses_alpha && ai < alphas.size() ? alphas[ai++] : da;
    a.beta = uses_beta && bi < betas.size() ? betas[bi++] : db;
    acts.push_back(a);
  }
  return acts;
}

void register_recurrent_schemas(SchemaRegistry& r) {
  r.add({"RNN", 3, 6, with_attrs(infer_recurrent), ""});
  r.add({"GRU", 3, 6, with_attrs(infer_recurrent), ""});
  r.add({"LSTM", 3, 8, with_attrs(infer_recurrent), ""});
}

}  // namespace tandem

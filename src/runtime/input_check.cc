#include "runtime/input_check.h"

#include <algorithm>

#include "core/error.h"

namespace tandem {

namespace {
std::string names_of(const std::vector<TensorInfo>& declared) {
  std::string names;
  for (const auto& d : declared) names += (names.empty() ? "" : ", ") + d.name;
  return names;
}
}  // namespace

std::vector<const Tensor*> match_inputs(const std::vector<TensorInfo>& declared,
                                        const std::vector<Tensor>& inputs) {
  std::vector<const Tensor*> ordered(declared.size(), nullptr);
  bool by_name = !inputs.empty();
  for (const Tensor& t : inputs) by_name = by_name && !t.name().empty();
  if (by_name) {
    for (const Tensor& t : inputs) {
      auto it = std::find_if(declared.begin(), declared.end(),
                             [&](const TensorInfo& d) { return d.name == t.name(); });
      TANDEM_CHECK(it != declared.end(), ErrorCode::kInvalidArgument,
                   "unknown input name '{}'; the model's inputs are: {}", t.name(),
                   names_of(declared));
      size_t i = static_cast<size_t>(it - declared.begin());
      TANDEM_CHECK(!ordered[i], ErrorCode::kInvalidArgument, "input '{}' is given twice",
                   t.name());
      ordered[i] = &t;
    }
  } else {
    TANDEM_CHECK(inputs.size() <= declared.size(), ErrorCode::kInvalidArgument,
                 "{} inputs given, but the model has {} ({})", inputs.size(), declared.size(),
                 names_of(declared));
    for (size_t i = 0; i < inputs.size(); ++i) ordered[i] = &inputs[i];
  }
  for (size_t i = 0; i < declared.size(); ++i) {
    const TensorInfo& d = declared[i];
    TANDEM_CHECK(ordered[i], ErrorCode::kInvalidArgument,
                 "missing input '{}' ({} {}); the model's inputs are: {}", d.name,
                 dtype_name(d.dtype), declared_shape_str(d), names_of(declared));
  }
  return ordered;
}

void check_input(const TensorInfo& d, bool rank_known, const Tensor& t, size_t first_dim) {
  TANDEM_CHECK(t.dtype() == d.dtype, ErrorCode::kInvalidArgument,
               "input '{}' has dtype {}, but the model expects {}", d.name, dtype_name(t.dtype()),
               dtype_name(d.dtype));
  bool fits = !rank_known || t.rank() == d.shape.size();
  for (size_t k = first_dim; fits && rank_known && k < d.shape.size(); ++k)
    fits = d.shape[k] < 0 || d.shape[k] == t.dim(k);
  TANDEM_CHECK(fits, ErrorCode::kInvalidArgument,
               "input '{}' has shape {}, but the model expects {}", d.name, shape_str(t.shape()),
               declared_shape_str(d));
  // An empty input is almost always a caller's bug (an empty batch); it is accepted only where
  // the model itself declares that dimension as 0.
  for (size_t k = 0; k < t.rank(); ++k)
    TANDEM_CHECK(t.dim(k) > 0 || (rank_known && d.shape[k] == 0), ErrorCode::kInvalidArgument,
                 "input '{}' has shape {} with a zero-sized dimension; the model declares {}",
                 d.name, shape_str(t.shape()), declared_shape_str(d));
  TANDEM_CHECK(t.raw() != nullptr, ErrorCode::kInvalidArgument, "input '{}' has no data",
               d.name);
}

}  // namespace tandem

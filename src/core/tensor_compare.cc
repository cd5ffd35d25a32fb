#include "core/tensor_compare.h"

#include <cmath>

#include "core/dtype_visit.h"
#include "core/error.h"
#include "core/half.h"

namespace tandem {

double element_as_double(const Tensor& t, int64_t i) {
  if (t.dtype() == DataType::kFloat16) return half_to_float(t.data<uint16_t>()[i]);
  if (t.dtype() == DataType::kBFloat16) return bfloat16_to_float(t.data<uint16_t>()[i]);
  double v = 0;
  const bool native = visit_dtype(
      t.dtype(), [&](auto tag) { v = static_cast<double>(t.data<decltype(tag)>()[i]); });
  TANDEM_CHECK(native, ErrorCode::kUnsupported, "cannot compare dtype {}", dtype_name(t.dtype()));
  return v;
}

TensorAgreement agreement(const Tensor& got, const Tensor& want) {
  TensorAgreement a;
  if (got.dtype() != want.dtype()) {
    a.mismatch =
        fmt::format("dtype {} != reference {}", dtype_name(got.dtype()), dtype_name(want.dtype()));
    return a;
  }
  if (got.shape() != want.shape()) {
    a.mismatch =
        fmt::format("shape {} != reference {}", shape_str(got.shape()), shape_str(want.shape()));
    return a;
  }
  double dot = 0, got_sq = 0, want_sq = 0, abs_sum = 0, want_abs_sum = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double g = element_as_double(got, i), w = element_as_double(want, i);
    ++a.count;
    if (!std::isfinite(g) || !std::isfinite(w)) {
      // Two NaNs, or the same infinity, agree.
      const bool same = (std::isnan(g) && std::isnan(w)) || g == w;
      if (!same) ++a.special_mismatches;
      continue;
    }
    dot += g * w;
    got_sq += g * g;
    want_sq += w * w;
    const double d = std::abs(g - w);
    if (d > a.max_abs) a.max_abs = d;
    abs_sum += d;
    want_abs_sum += std::abs(w);
  }
  if (got_sq > 0 && want_sq > 0) {
    a.cosine = dot / (std::sqrt(got_sq) * std::sqrt(want_sq));
  } else {
    a.cosine = got_sq == want_sq ? 1.0 : 0.0;  // both zero vectors agree; one alone does not
  }
  a.mean_rel = want_abs_sum > 0 ? abs_sum / want_abs_sum : (abs_sum > 0 ? INFINITY : 0.0);
  return a;
}

}  // namespace tandem

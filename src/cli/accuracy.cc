#include "cli/accuracy.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"
#include "core/tensor_compare.h"

namespace tandem::cli {

namespace {

bool exact_dtype(DataType d) {
  return d != DataType::kFloat32 && d != DataType::kFloat64 && d != DataType::kFloat16 &&
         d != DataType::kBFloat16;
}

// Why output `a` does not pass (empty when it does).
std::string verdict(const TensorAgreement& a, DataType dtype, const AccuracyThresholds& t) {
  if (!a.mismatch.empty()) return a.mismatch;
  if (a.special_mismatches > 0)
    return fmt::format("{} NaN/infinity positions differ", a.special_mismatches);
  if (exact_dtype(dtype)) return a.max_abs == 0 ? "" : "values differ (exact dtype)";
  if (!(a.cosine >= t.cosine_min))
    return fmt::format("cosine {:.12g} < {}", a.cosine, t.cosine_min);
  if (t.max_abs >= 0 && a.max_abs > t.max_abs)
    return fmt::format("max abs {:.3g} > {}", a.max_abs, t.max_abs);
  return "";
}

}  // namespace

size_t print_accuracy(const std::vector<Tensor>& got, const std::vector<Tensor>& want,
                      const AccuracyThresholds& thresholds, nlohmann::json* report) {
  TANDEM_CHECK(got.size() == want.size(), ErrorCode::kInvalidArgument,
               "the model has {} outputs, the reference {}", got.size(), want.size());
  // Outputs pair by name when every name is found in the reference, else by position.
  std::vector<size_t> pair(got.size());
  bool by_name = true;
  for (size_t i = 0; i < got.size() && by_name; ++i) {
    by_name = false;
    for (size_t j = 0; j < want.size(); ++j)
      if (want[j].name() == got[i].name()) {
        pair[i] = j;
        by_name = true;
      }
  }
  if (!by_name)
    for (size_t i = 0; i < got.size(); ++i) pair[i] = i;

  fmt::print("{:<24} {:<8} {:<18} {:>12} {:>10} {:>10}  {}\n", "output", "dtype", "shape", "cosine",
             "max abs", "mean rel", "result");
  size_t failed = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const Tensor& g = got[i];
    const Tensor& w = want[pair[i]];
    const TensorAgreement ag = agreement(g, w);
    const std::string why = verdict(ag, w.dtype(), thresholds);
    if (!why.empty()) ++failed;
    fmt::print("{:<24} {:<8} {:<18} {:>12.8f} {:>10.3g} {:>10.3g}  {}\n", g.name(),
               dtype_name(g.dtype()), shape_str(g.shape()), ag.cosine, ag.max_abs, ag.mean_rel,
               why.empty() ? "ok" : "FAIL: " + why);
    if (report)
      report->push_back({{"output", g.name()},
                         {"reference_output", w.name()},
                         {"dtype", dtype_name(g.dtype())},
                         {"shape", g.shape()},
                         {"cosine", ag.cosine},
                         {"max_abs", ag.max_abs},
                         {"mean_rel", std::isfinite(ag.mean_rel) ? nlohmann::json(ag.mean_rel)
                                                                 : nlohmann::json("inf")},
                         {"special_mismatches", ag.special_mismatches},
                         {"pass", why.empty()},
                         {"why", why}});
  }
  fmt::print(
      "mean rel = sum |output - reference| / sum |reference|; pass: cosine >= {}{} "
      "(exact equality for integer and bool outputs)\n",
      thresholds.cosine_min,
      thresholds.max_abs >= 0 ? fmt::format(" and max abs <= {}", thresholds.max_abs) : "");
  return failed;
}

}  // namespace tandem::cli

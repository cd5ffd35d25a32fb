// The accuracy table `tandem compare` and `tandem bench --reference` print: per output the cosine
// similarity, max abs error and mean relative error against a reference, and pass/fail against a
// threshold (MindSpore Lite's benchmark checks its outputs the same way).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tandem/tensor.h"

namespace tandem::cli {

struct AccuracyThresholds {
  double cosine_min = 0.9999;
  double max_abs = -1;  // < 0: not checked
};

// Prints the table of `got` against `want` (paired by name when every name is found, else by
// position) and the rule line; appends one JSON object per output to `report` when given.
// Returns how many outputs fail. Throws when the output counts differ.
size_t print_accuracy(const std::vector<Tensor>& got, const std::vector<Tensor>& want,
                      const AccuracyThresholds& thresholds, nlohmann::json* report = nullptr);

}  // namespace tandem::cli

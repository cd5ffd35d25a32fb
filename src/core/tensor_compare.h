// How close one tensor is to a reference: the figures `tandem compare` prints and checks (cosine
// similarity, max abs error, mean relative error), and reading any numeric element as a double.
#pragma once

#include <cstdint>
#include <string>

#include "tandem/tensor.h"

namespace tandem {

// Element i of a numeric or bool tensor as a double (float16/bfloat16 widened); throws a
// kUnsupported tandem::Error for string or other non-numeric dtypes.
double element_as_double(const Tensor& t, int64_t i);

struct TensorAgreement {
  // Empty when the two can be compared element by element; otherwise why not (dtype or shape).
  std::string mismatch;
  int64_t count = 0;      // elements compared
  double cosine = 1.0;    // of the two as vectors over the finite pairs; 1 when both are all zero
  double max_abs = 0.0;   // max |got - want| over the finite pairs
  double mean_rel = 0.0;  // sum |got - want| / sum |want| over the finite pairs (0 when both 0)
  // Positions where one side is NaN and the other not, or infinities that differ: counted apart,
  // since they have no size.
  int64_t special_mismatches = 0;
};

// `got` against the reference `want`.
TensorAgreement agreement(const Tensor& got, const Tensor& want);

}  // namespace tandem

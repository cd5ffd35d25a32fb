// Runs one op on the reference backend, outside any model: builds a one-node graph, infers the
// outputs with the op's schema, allocates them and calls the kernel. For kernel unit tests.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "graph/ir.h"

namespace tandem::testing {

Attribute attr_int(int64_t v);
Attribute attr_float(float v);
Attribute attr_string(std::string v);
Attribute attr_ints(std::vector<int64_t> v);
Attribute attr_floats(std::vector<float> v);

// An input Tensor that is !defined() is passed as an omitted optional input.
std::vector<Tensor> run_ref_op(const std::string& op_type, const std::vector<Tensor>& inputs,
                               const std::map<std::string, Attribute>& attrs = {},
                               int num_outputs = 1, int opset = 17);

// Largest |a - b| over all elements (both converted to double); throws on shape/dtype mismatch.
double max_abs_diff(const Tensor& a, const Tensor& b);

}  // namespace tandem::testing

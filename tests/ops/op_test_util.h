// Runs one op on the reference backend, outside any model: builds a one-node graph, infers the
// outputs with the op's schema, allocates them and calls the kernel. For kernel unit tests.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem {
class Backend;
}

namespace tandem::testing {

Attribute attr_int(int64_t v);
Attribute attr_float(float v);
Attribute attr_string(std::string v);
Attribute attr_ints(std::vector<int64_t> v);
Attribute attr_floats(std::vector<float> v);

// An input Tensor that is !defined() is passed as an omitted optional input. `domain` is the
// op's domain ("" for ONNX ops, kFusedDomain for fused ones); an op_type of the form
// "domain:Op" (e.g. "com.tandem:Gelu") also names an op outside the default domain.
std::vector<Tensor> run_ref_op(const std::string& op_type, const std::vector<Tensor>& inputs,
                               const std::map<std::string, Attribute>& attrs = {},
                               int num_outputs = 1, int opset = 17, const std::string& domain = "");

// What run_op gives back: the outputs and the name of the backend whose kernel computed them.
struct OpRun {
  std::vector<Tensor> outputs;
  std::string backend;
};

// Runs one op on `backend` as a session would: the node's values carry their dtypes and shapes,
// and when `backend` has no kernel for the op or its factory declines the node, the reference
// backend runs it (OpRun::backend says which ran). constant[i] marks input i as a constant of
// the model (an initializer), which lets kernels prepack it. The kernel's compute is called
// `repeats` times on the same inputs (to exercise per-shape caches); the last outputs are
// returned. Before each call the outputs are zero-filled for a reference kernel and filled with
// NaN (0xFF bytes) for any other, as the executor does (TANDEM_POISON_OUTPUTS).
OpRun run_op(const Backend& backend, const std::string& op_type, const std::vector<Tensor>& inputs,
             const std::map<std::string, Attribute>& attrs = {}, int num_outputs = 1,
             int opset = 17, const std::vector<bool>& constant = {}, int threads = 2,
             int repeats = 1, const std::string& domain = "");

// Largest |a - b| over all elements (both converted to double); throws on shape/dtype mismatch.
double max_abs_diff(const Tensor& a, const Tensor& b);

}  // namespace tandem::testing

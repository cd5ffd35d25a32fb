// Folds a channels-last Concat read only by a channels-last BatchNormalization into the BN:
//
//   Concat(X0, X1, ..., Xk, axis = channels) -> BatchNormalization(., scale, B, mean, var)
//     =>   BatchNormalization(X0, scale, B, mean, var, X1, ..., Xk)     (kFusedDomain, NHWC)
//
// The BN then reads the parts where they lie and writes its output once; the concatenated tensor
// is never written out. This is DenseNet's dense layer: each one concatenates every earlier
// feature map and normalises the result, so the concat copied the block's whole history once per
// layer (about as much memory traffic as the BN itself). Runs after the channels-last pass, which
// makes both the channels-last BN and the NHWC Concat (axis 3).
#include <algorithm>
#include <vector>

#include "ops/layout.h"
#include "ops/schema.h"
#include "optimizer/passes.h"
#include "optimizer/pattern_util.h"

namespace tandem {

namespace {

bool try_fuse(Graph& graph, Node* bn) {
  if (bn->domain != kFusedDomain || bn->op_type != "BatchNormalization" || !is_channels_last(*bn) ||
      bn->inputs.size() != 5 || !bn->has_input(0))
    return false;
  Value* joined = bn->inputs[0];
  Node* concat = pattern::producer(joined, "Concat");
  if (!concat || !pattern::single_use(joined) || concat->inputs.size() < 2 ||
      concat->outputs.size() != 1)
    return false;
  const int64_t axis = concat->attr_int_or("axis", 0);
  if (axis != 3 && axis != -1) return false;  // the NHWC channels
  for (const Value* v : concat->inputs)
    if (!v || v->is_constant()) return false;
  std::vector<Value*> inputs{concat->inputs[0]};
  inputs.insert(inputs.end(), bn->inputs.begin() + 1, bn->inputs.end());
  inputs.insert(inputs.end(), concat->inputs.begin() + 1, concat->inputs.end());
  for (Value* v : bn->inputs) {
    auto it = std::find(v->consumers.begin(), v->consumers.end(), bn);
    if (it != v->consumers.end()) v->consumers.erase(it);
  }
  bn->inputs = inputs;
  for (Value* v : inputs) v->consumers.push_back(bn);
  graph.remove_node(concat);
  return true;
}

}  // namespace

int fuse_concat_into_batchnorm(Graph& graph) {
  const int fused = pattern::fuse_until_done(graph, try_fuse);
  if (fused) graph.remove_unused_values();
  return fused;
}

}  // namespace tandem

// The fusion pipeline: the order of the fusion passes, in one table. Order matters where one
// rewrite enables another (a BatchNormalization folded into a Conv lets the Conv then take the
// following activation), so the table runs to a fixed point.
#include "optimizer/passes.h"

namespace tandem {

namespace {
using FusionPass = int (*)(Graph&);

// Each entry: one pass, one file (optimizer/fuse_<what>.cc).
constexpr FusionPass kFusionPasses[] = {
    fuse_batchnorm_into_conv,  // before fuse_conv_activation: Conv+BN then takes the Relu
    fuse_conv_activation,
    fuse_gelu,
    // After fuse_gelu: it matches a * Gelu(g).
    fuse_geglu,
    fuse_group_norm,
    fuse_attention,
    // After fuse_attention: the attention MatMuls are gone by then.
    fuse_matmul_bias,
    convert_to_channels_last,  // needs the fused convs; runs once
    // After convert_to_channels_last: these work on its channels-last ops.
    fuse_concat_into_batchnorm,
};
}  // namespace

int run_fusion_passes(Graph& graph) {
  int total = 0;
  for (int round = 0; round < 8; ++round) {
    int changed = 0;
    for (FusionPass pass : kFusionPasses)
      if (pass) changed += pass(graph);
    if (changed) changed += remove_dead_nodes(graph);
    total += changed;
    if (!changed) break;
  }
  return total;
}

}  // namespace tandem

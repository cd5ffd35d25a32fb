// Graph passes that do not depend on input shapes; each lives in its own file. Passes that need
// concrete shapes (folding Shape -> Gather -> ... -> Reshape chains) run in the planner
// (runtime/plan.cc) once the input shapes are known.
#pragma once

#include "ir/ir.h"

namespace tandem {

// Rewires the consumers of every Identity (and Dropout in inference, and Pad with all pads zero)
// to its input.
// Returns the number of nodes removed.
int remove_identity_nodes(Graph& graph);
// Removes nodes none of whose outputs is used.
int remove_dead_nodes(Graph& graph);
// Evaluates nodes whose inputs are all constants (reference kernels) and replaces them by their
// values.
int fold_constants(Graph& graph);

// All of the above, to a fixed point.
void run_default_passes(Graph& graph);

// Fusion passes (optimizer/fuse_*.cc, listed in fusion_passes.cc): each recognises a pattern
// torch exports and replaces it by one node the fast backends run in one go — a fused op in
// kFusedDomain, or the ONNX op itself with folded constants. Every fused op has a reference
// kernel too, so a fused graph still runs anywhere; `--backend ref` skips fusion altogether and
// runs the model as written (the oracle). Returns the number of rewrites.
int run_fusion_passes(Graph& graph);

// Folds an inference BatchNormalization after a Conv (constant weights and statistics) into the
// Conv's weights and bias (fuse_batchnorm_into_conv.cc).
int fuse_batchnorm_into_conv(Graph& graph);
// Conv -> [Add residual] -> [activation] into one FusedConv (fuse_conv_activation.cc).
int fuse_conv_activation(Graph& graph);
// Runs regions of 2-D convs and the ops between them on NHWC tensors, with layout changes only at
// the regions' borders (channels_last.cc). Last: it works on the fused convs.
int convert_to_channels_last(Graph& graph);
// A channels-last Concat read only by a channels-last BatchNormalization becomes the BN's X in
// parts (fuse_concat_into_batchnorm.cc). After convert_to_channels_last.
int fuse_concat_into_batchnorm(Graph& graph);
// The fusion passes of the table, each returning its number of rewrites.
int fuse_gelu(Graph& graph);         // erf / tanh GELU -> Gelu
int fuse_geglu(Graph& graph);        // chunk(2, -1) halves a, g; a * Gelu(g) -> GeGLU
int fuse_group_norm(Graph& graph);   // Reshape/InstanceNorm/Reshape/Mul/Add[/SiLU] -> GroupNorm
int fuse_attention(Graph& graph);    // MatMul/scale/mask/Softmax/MatMul[+Transposes] -> Attention
int fuse_matmul_bias(Graph& graph);  // MatMul(x, W) + b [+ residual] -> FusedMatMul

}  // namespace tandem

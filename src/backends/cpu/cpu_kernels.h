// The CPU backend's kernel families (one per backends/cpu/<family>.cc), called by the kernel
// table in cpu_kernels.cc.
#pragma once

#include <cstdint>

#include "backends/backend.h"

namespace tandem::cpu {

void register_conv_kernels(KernelRegistry& r);       // Conv, FusedConv (oneDNN)
void register_matmul_kernels(KernelRegistry& r);     // MatMul, Gemm (oneDNN)
void register_softmax_kernels(KernelRegistry& r);    // Softmax, LogSoftmax (oneDNN)
void register_eltwise_kernels(KernelRegistry& r);    // Sigmoid, Tanh, Relu, ... (oneDNN)
void register_binary_kernels(KernelRegistry& r);     // Add, Sub, Mul, Div (loops)
void register_resize_kernels(KernelRegistry& r);     // Resize, Upsample (tap tables)
void register_transpose_kernels(KernelRegistry& r);  // Transpose (tiled)
void register_recurrent_kernels(KernelRegistry& r);  // RNN, GRU, LSTM (vector loops)
void register_batchnorm_kernels(KernelRegistry& r);  // BatchNormalization (inference)
void register_pool_kernels(KernelRegistry& r);       // MaxPool, AveragePool (oneDNN), Global*Pool
void register_layout_kernels(KernelRegistry& r);     // ToChannelsLast, ToChannelsFirst
// InstanceNormalization, LayerNormalization, fused GroupNorm (vector loops)
void register_normalization_kernels(KernelRegistry& r);
void register_gelu_kernels(KernelRegistry& r);       // Erf, Gelu, fused Gelu (vector loops)
void register_attention_kernels(KernelRegistry& r);  // fused Attention (vector loops)
// ConvTranspose (oneDNN deconvolution)
void register_conv_transpose_kernels(KernelRegistry& r);
// Concat (one memcpy per outer index and input)
void register_concat_kernels(KernelRegistry& r);

// How many compute calls CPU kernels have handed to their reference kernel so far (tensors the
// fast path does not handle, seen only at run time), over the whole process. For tests and
// diagnostics.
int64_t reference_fallbacks();

// How many Conv/FusedConv plans chose oneDNN's Winograd algorithm so far, process-wide (conv.cc,
// worth_winograd; TANDEM_CONV_WINOGRAD=0 turns it off). For tests and diagnostics.
int64_t winograd_conv_plans();

}  // namespace tandem::cpu

// The reference backend: plain loops, the oracle every other backend is tested against, and the
// backend every other one falls back to for a node it has no kernel for.
#pragma once

#include "backends/backend.h"

namespace tandem {

const Backend& reference_backend();

// ---- Reference kernel families (one per backends/ref/<family>.cc), called by ref_kernels.cc.
void register_elementwise_ref_kernels(KernelRegistry& r);
void register_activation_ref_kernels(KernelRegistry& r);
void register_cast_ref_kernels(KernelRegistry& r);
void register_conv_ref_kernels(KernelRegistry& r);
void register_pool_ref_kernels(KernelRegistry& r);
void register_normalization_ref_kernels(KernelRegistry& r);
void register_resize_ref_kernels(KernelRegistry& r);
void register_matmul_ref_kernels(KernelRegistry& r);
void register_softmax_ref_kernels(KernelRegistry& r);
void register_reduce_ref_kernels(KernelRegistry& r);
void register_shape_ref_kernels(KernelRegistry& r);
void register_tensor_ref_kernels(KernelRegistry& r);
void register_signal_ref_kernels(KernelRegistry& r);
void register_detection_ref_kernels(KernelRegistry& r);
void register_selection_ref_kernels(KernelRegistry& r);
void register_recurrent_ref_kernels(KernelRegistry& r);
void register_quantize_ref_kernels(KernelRegistry& r);
void register_dropout_ref_kernels(KernelRegistry& r);
void register_loss_ref_kernels(KernelRegistry& r);
void register_text_ref_kernels(KernelRegistry& r);
void register_layout_ref_kernels(KernelRegistry& r);

}  // namespace tandem

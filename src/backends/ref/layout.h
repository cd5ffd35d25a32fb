// Reference NCHW <-> NHWC copies (rank 4, any dtype), for the channels-last ops (ops/layout.h).
#pragma once

#include <functional>

#include "backends/backend.h"

namespace tandem {

// Copies the NCHW tensor `src` into the NHWC tensor `dst` (dst's shape: src's, permuted).
void copy_to_channels_last(const KernelContext& ctx, const Tensor& src, Tensor& dst);
// Copies the NHWC tensor `src` into the NCHW tensor `dst`.
void copy_to_channels_first(const KernelContext& ctx, const Tensor& src, Tensor& dst);

// The NCHW computation run_on_channels_first wraps: a reference kernel called on the NCHW
// inputs and outputs.
using NchwFn =
    std::function<void(std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs)>;

// Runs `nchw` on the NHWC input 0 and output 0 of a channels-last node: the input is copied to
// NCHW, `nchw` writes an NCHW temporary, and the result is copied back to NHWC. Other inputs are
// passed through.
void run_on_channels_first(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                           std::span<Tensor* const> outputs, const NchwFn& nchw);

}  // namespace tandem

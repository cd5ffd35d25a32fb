// The Conv/ConvTranspose attributes as the conv schemas read and check them, shared with kernels
// that want the same parsing (the CPU backend's oneDNN convolution).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem {

// The attributes shared by Conv and ConvTranspose, checked against the input ranks.
struct ConvAttrs {
  int64_t group = 1;
  std::vector<int64_t> kernel, strides, dilations, pads;  // pads: begins then ends
  std::string auto_pad;
};

// Reads and checks the attributes of a Conv or ConvTranspose node for input X of shape `x` and
// weight W of shape `w`; throws tandem::Error naming the node on anything invalid.
ConvAttrs read_conv_attrs(const Node& node, const Shape& x, const Shape& w);

// The output shape of a Conv (not ConvTranspose) with input X of shape `x` and weight W of shape
// `w`; throws tandem::Error naming the node when they do not fit.
Shape conv_output_shape(const Node& node, const Shape& x, const Shape& w);

// The begin and end pads of every spatial axis of a Conv (not ConvTranspose) with input shape
// `x` and output shape `y` (as infer_conv gives it): the explicit pads, none for VALID, or the
// total SAME padding split with the larger half at the end (SAME_UPPER) or the beginning
// (SAME_LOWER).
void conv_pads(const ConvAttrs& a, const Shape& x, const Shape& y, std::vector<int64_t>& begin,
               std::vector<int64_t>& end);

// The begin pads of every spatial axis of a ConvTranspose with input shape `x` and output shape
// `y` (as infer_conv_transpose gives it): the explicit pads (none for VALID), or, when the output
// size is given (output_shape) or derived (SAME_*), the total padding it implies, split with the
// smaller half first for SAME_UPPER and the larger half first otherwise. A negative total (more
// output than the input covers) counts as 0: the extra output is at the end, like output_padding.
std::vector<int64_t> conv_transpose_pad_begins(const Node& node, const ConvAttrs& a,
                                               const Shape& x, const Shape& y);

}  // namespace tandem

// Channels-last (NHWC) data in the graph. The channels_last pass (optimizer/channels_last.cc)
// runs chains of 2-D convolutions and the ops between them on NHWC tensors, with explicit
// ToChannelsLast / ToChannelsFirst nodes (kFusedDomain) at the region's borders. A value inside
// such a region holds the NHWC tensor [N, H, W, C] of what the model computes as [N, C, H, W]; ops
// that read or write one carry the attribute channels_last = 1 (FusedConv and the kFusedDomain
// MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, BatchNormalization), or do not care
// (elementwise ops, Concat with its axis renumbered).
#pragma once

#include "ir/ir.h"

namespace tandem {

// [N, C, H, W] -> [N, H, W, C] and back (rank 4).
inline Shape nchw_to_nhwc(const Shape& s) {
  return {s[0], s[2], s[3], s[1]};
}
inline Shape nhwc_to_nchw(const Shape& s) {
  return {s[0], s[3], s[1], s[2]};
}

// Whether `node` has channels_last = 1.
inline bool is_channels_last(const Node& node) {
  return node.attr_int_or("channels_last", 0) != 0;
}

}  // namespace tandem

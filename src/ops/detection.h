// NonMaxSuppression's selection, shared by its schema (the output row count depends on the
// input values) and its reference kernel.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "ir/ir.h"

namespace tandem {

// Rows (batch, class, box) selected from boxes [B, N, 4] and scores [B, C, N]; inputs 2..4
// (max_output_boxes_per_class, iou_threshold, score_threshold) may be nullptr.
std::vector<std::array<int64_t, 3>> non_max_suppression(const Node& node, const Tensor& boxes,
                                                        const Tensor& scores,
                                                        const Tensor* max_per_class,
                                                        const Tensor* iou_threshold,
                                                        const Tensor* score_threshold);

}  // namespace tandem

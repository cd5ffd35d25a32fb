// The detection family: NonMaxSuppression's selection, shared by its schema (the output row
// count depends on the input values) and its reference kernel, and the attributes of RoiAlign and
// GridSample, parsed once for the schema and the kernel.
#pragma once

#include <array>
#include <cstdint>
#include <string>
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

// RoiAlign's samples per bin side, explicit (sampling_ratio) or adaptive (ceil(roi extent / bins)).
// Real models use 0 (adaptive: a few to a few dozen) or 2; the bound keeps a hostile roi or
// attribute from asking for millions of samples per bin (the reference kernel would run for
// minutes). ONNX Runtime leaves it unbounded: an adaptive grid over 64 is the one difference.
inline constexpr int64_t kMaxRoiAlignSamplingRatio = 64;

struct DetectionAttrs {
  std::string mode;  // RoiAlign: avg or max; GridSample: bilinear, nearest or bicubic
  int64_t output_height = 1, output_width = 1;  // RoiAlign
  float spatial_scale = 1.0f;                   // RoiAlign
  int64_t sampling_ratio = 0;                   // RoiAlign; 0: adaptive
  bool half_pixel = false;  // RoiAlign: coordinate_transformation_mode half_pixel (opset 16)
  std::string padding_mode = "zeros";  // GridSample: zeros, border or reflection
  bool align_corners = false;          // GridSample

  // Throws naming the node on a mode or padding_mode it does not implement.
  static DetectionAttrs parse(const Node& node);
};

}  // namespace tandem

// The attributes of the signal family (windows, DFT, STFT, MelWeightMatrix), parsed once from the
// node and handed to the schema and to the reference kernels.
#pragma once

#include <cstdint>

#include "ir/ir.h"

namespace tandem {

struct SignalAttrs {
  int64_t axis = 1;       // DFT: the transformed axis, as written (may be negative)
  bool inverse = false;   // DFT
  bool onesided = false;  // DFT (default 0), STFT (default 1): only the first len / 2 + 1 bins
  bool periodic = true;   // windows
  DataType output_datatype = DataType::kFloat32;  // windows, MelWeightMatrix

  // Throws naming the node on an output_datatype it cannot write and on a onesided inverse DFT.
  static SignalAttrs parse(const Node& node);
};

}  // namespace tandem

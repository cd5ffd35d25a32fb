// The fuzz targets' common step: model bytes (.onnx or .tandem) -> build and plan under small size
// caps (so that the fuzzer finds bugs, not the machine's memory limit). std::bad_alloc or
// std::length_error escaping means a size computed from the bytes that no check bounded: abort,
// so libFuzzer records it. tandem::Error and other exceptions are refusals.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <vector>

#include "tandem/model.h"

inline void fuzz_build_and_plan(const uint8_t* data, size_t size) {
  tandem::Context ctx;
  ctx.thread_num = 1;
  // 4 MiB: the reference kernels that constant folding runs take about 1 s per 16 MiB under ASan
  // at -O1 (a 220-byte Pad model hit libFuzzer's 25 s timeout with a 16 MiB cap on a busy machine).
  ctx.max_tensor_bytes = size_t{4} << 20;
  ctx.max_model_bytes = size_t{16} << 20;
  try {
    tandem::Model model = tandem::Model::build_from_buffer(data, size, ctx);
    // Plan for batch 1 where inputs have symbolic dims (fixed shapes were planned by the build).
    std::vector<tandem::Shape> shapes;
    for (const tandem::TensorInfo& in : model.inputs()) {
      tandem::Shape s = in.shape;
      for (int64_t& d : s)
        if (d < 0) d = 1;
      shapes.push_back(s);
    }
    model.output_info_for(shapes);
  } catch (const tandem::Error&) {
    // A clear refusal is the expected outcome for most inputs.
  } catch (const std::bad_alloc&) {
    std::abort();
  } catch (const std::length_error&) {
    std::abort();
  } catch (const std::exception&) {
  }
}

// `tandem convert`: an .onnx file loaded, its input shapes fixed, optimised as a build optimises
// it, and written as one .tandem file (format/tandem_format.h) that later builds map instead of
// parsing and optimising again. Also the conversion cache (--cache-dir, TANDEM_CACHE_DIR).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/limits.h"
#include "format/tandem_format.h"
#include "ir/ir.h"
#include "tandem/model.h"

namespace tandem {

// The optimiser as every build runs it: the default passes, then (for target "cpu") the fusion
// passes and the default passes again. Target "ref" keeps the graph as written (the oracle).
void optimize_graph(Graph& graph, const std::string& target);

// A graph input's declared name, dtype, shape and dimension names.
TensorInfo declared_info(const Value* v);

// Checks `shapes` against the graph's declared inputs (a known input, dims >= 1, fitting the
// declaration) and writes them into `infos` (one per graph input, in order). Throws
// kInvalidArgument naming the input.
void apply_input_shapes(const Graph& graph, std::vector<TensorInfo>& infos, const ShapeMap& shapes);

struct ConvertOptions {
  ShapeMap input_shapes;
  // > 0: dim 0 of every input whose dim 0 is symbolic (and not in input_shapes) becomes `batch`.
  int64_t batch = 0;
  std::string target = "cpu";
  SizeLimits limits;
  // Target cpu: run the model once at conversion and store the layouts the kernels pack constant
  // weights into (backends/cpu/prepack.h), so that loading reads them in place.
  bool prepack = true;
  // "fp16": float32 weights of at least kFp16MinElements elements stored as float16 (half the
  // file), widened to float32 when loaded (each process then holds its own float32 copy, so no
  // prepacked layouts are stored). "fp32" (default): stored as they are.
  std::string weights = "fp32";
  // The thread count of that run (some kernels choose their weight layout by it): 1, as a worker
  // of the parallel runner on one core runs.
  int prepack_threads = 1;
};

struct ConvertSummary {
  size_t file_bytes = 0;
  size_t weight_bytes = 0;  // constants' bytes in the optimised graph
  size_t fp16_weights = 0;  // constants stored as float16 (--weights fp16)
  size_t nodes_before = 0;  // nodes as loaded
  size_t nodes_after = 0;   // nodes after the optimiser
  ShapeMap fixed_shapes;    // the input shapes written to the file
  bool uses_external_data = false;
  size_t prepacked_layouts = 0;  // prepacked weight layouts written
  size_t prepacked_bytes = 0;
  std::string prepack_skipped;  // why no layouts were prepacked ("" when they were)
};

// Converts `onnx_path` into `out_path` (written atomically). Throws tandem::Error.
ConvertSummary convert_to_tandem(const std::string& onnx_path, const std::string& out_path,
                                 const ConvertOptions& options);

// Converts `onnx_path` into a new memfd, sealed against any change (write, grow, shrink), and
// returns its descriptor (close-on-exec; the caller owns it). Other processes of the user map it
// by /proc/<pid>/fd/<fd>: one physical copy of the weights for all of them.
int convert_to_sealed_memfd(const std::string& onnx_path, const ConvertOptions& options);

// The cache: the converted file for (model bytes, fixed shapes, target, format version) in
// `cache_dir`, mapped. On a miss, or when the entry there is not a valid .tandem file (truncated,
// corrupt...), the model is converted into the entry now (atomically: a reader never sees half a
// file), so a damaged entry is rebuilt, never trusted. `hit` says whether a valid entry was there.
// Models with external data are converted but not kept (the key covers the .onnx file's bytes
// only).
TandemModel cached_conversion(const std::string& cache_dir, const std::string& onnx_path,
                              const ShapeMap& input_shapes, const std::string& target,
                              const SizeLimits& limits, bool* hit = nullptr);

// The cache folder a build uses: Context::cache_dir, else $TANDEM_CACHE_DIR, else none ("").
std::string cache_dir_for(const Context& context);

}  // namespace tandem

// Context: where and how a Model runs.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace tandem {

struct Context {
  // "cpu" (the whole host) or "cpu:N". Other device kinds arrive with their backends.
  std::string device = "cpu";
  // Intra-op threads; 0 means one per core of the device (or of core_list when given).
  int thread_num = 0;
  // Cores to pin the threads to; empty means no pinning.
  std::vector<int> core_list;
  // Kernel provider: "ref" (plain reference kernels, the oracle) or "auto" (the fastest
  // available for the device; today that is "ref").
  std::string backend = "auto";
  // Time every kernel and report the totals per op type in RunStats::op_time_ms.
  bool profile = false;

  // Size caps against hostile or broken models. A model file is untrusted input: a few bytes
  // can declare a tensor of 2^40 elements. Every tensor the model declares (initializers,
  // constants) or that the engine would allocate for it (intermediates, outputs, tensors folded
  // at build time) is checked against max_tensor_bytes before it is allocated; the model's
  // weights together (initializers and Constant nodes, inline or external) against
  // max_model_bytes. 0 means no limit.
  // The defaults leave room for real models: Stable Diffusion 2.1's UNet has 3.5 GB of fp32
  // weights, its largest weight is about 100 MB and its largest intermediate (attention scores
  // at 768x768, batch 2) about 3.4 GB; a 7B-parameter fp32 LLM has 28 GB of weights.
  // Tensors folded at build time have a much smaller cap of their own (64 MiB for a node whose
  // output is larger than its inputs); a larger one is left to run time, where this cap applies.
  size_t max_tensor_bytes = size_t{16} << 30;  // 16 GiB
  size_t max_model_bytes = size_t{64} << 30;   // 64 GiB

  // A folder of converted models (.tandem files, see docs/tandem-format.md): an .onnx built with
  // the same bytes, input shapes and target as before is mapped from there instead of parsed and
  // optimised again. Empty: $TANDEM_CACHE_DIR when set, else no cache.
  std::string cache_dir;

  // Whether loading a .tandem file checks its checksum (every byte read once). The parallel
  // runner's parent checks the file once and tells its workers to skip it: they map the same
  // bytes (the model digest, which includes the checksum, still guards against a replaced file).
  bool verify_checksum = true;
};

}  // namespace tandem

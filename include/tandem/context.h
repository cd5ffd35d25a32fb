// Context: where and how a Model runs.
#pragma once

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
};

}  // namespace tandem

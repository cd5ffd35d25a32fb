// Device strings and the cores each device owns.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace tandem::parallel {

struct DeviceSpec {
  std::string name;        // "cpu:0"
  std::string kind;        // "cpu" or "cuda"
  int index = 0;
  std::vector<int> cores;  // cpu devices: the cores its threads are pinned to
};

// Resolves device strings to specs. cpu devices split the host's `host_cores` evenly, in the
// order they are listed, unless `core_lists` gives them explicitly (then it must have one entry
// per device; an empty entry keeps the even split for that device). Throws on a malformed name.
std::vector<DeviceSpec> resolve_devices(const std::vector<std::string>& devices,
                                        const std::vector<std::vector<int>>& core_lists,
                                        int host_cores);

// One worker of the parallel runner: which device, which slot on it, how many threads.
struct WorkerSlot {
  int index = 0;
  DeviceSpec device;
  int threads = 1;
};

// Resolves the options' devices (default: one cpu device per host core) and places
// workers_per_device workers on each, splitting each device's cores between its workers.
// Refuses devices whose backend this build lacks.
std::vector<WorkerSlot> plan_workers(const std::vector<std::string>& devices,
                                     const std::vector<std::vector<int>>& core_lists,
                                     int workers_per_device);

// One worker of type W (an engine's worker record, with index, device and threads members) for
// every slot.
template <typename W>
std::vector<std::unique_ptr<W>> workers_for(const std::vector<WorkerSlot>& slots) {
  std::vector<std::unique_ptr<W>> workers;
  for (const WorkerSlot& slot : slots) {
    auto w = std::make_unique<W>();
    w->index = slot.index;
    w->device = slot.device;
    w->threads = slot.threads;
    workers.push_back(std::move(w));
  }
  return workers;
}

// "0-3,6" -> {0,1,2,3,6}
std::vector<int> parse_core_list(const std::string& text);

}  // namespace tandem::parallel

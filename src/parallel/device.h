// Device strings and the cores each device owns.
#pragma once

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

// "0-3,6" -> {0,1,2,3,6}
std::vector<int> parse_core_list(const std::string& text);

}  // namespace tandem::parallel

#include "parallel/device.h"

#include <sstream>
#include <thread>

#include "core/error.h"
#include "tandem/parallel.h"

namespace tandem {

std::vector<std::string> parse_device_list(const std::string& text) {
  std::vector<std::string> devices;
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos) {
    // At most 4 digits before converting: a longer count is out of range, not a stoi error.
    TANDEM_CHECK(text.size() <= 4, ErrorCode::kInvalidArgument,
                 "device count {} must be between 1 and 1024", text);
    int n = std::stoi(text);
    TANDEM_CHECK(n >= 1 && n <= 1024, ErrorCode::kInvalidArgument,
                 "device count {} must be between 1 and 1024", n);
    for (int i = 0; i < n; ++i) devices.push_back("cpu:" + std::to_string(i));
    return devices;
  }
  std::stringstream ss(text);
  std::string d;
  while (std::getline(ss, d, ',')) {
    d.erase(0, d.find_first_not_of(" \t"));
    d.erase(d.find_last_not_of(" \t") + 1);
    if (!d.empty()) devices.push_back(d);
  }
  TANDEM_CHECK(!devices.empty(), ErrorCode::kInvalidArgument,
               "no device in '{}': use e.g. \"cpu:0,cpu:1\" or a count", text);
  for (size_t i = 0; i < devices.size(); ++i) {
    const std::string& d = devices[i];
    auto colon = d.find(':');
    std::string kind = d.substr(0, colon),
                idx = colon == std::string::npos ? "" : d.substr(colon + 1);
    TANDEM_CHECK((kind == "cpu" || kind == "cuda") && !idx.empty() && idx.size() < 6 &&
                     idx.find_first_not_of("0123456789") == std::string::npos,
                 ErrorCode::kInvalidArgument,
                 "bad device '{}' in '{}': use cpu:N or cuda:N, e.g. \"cpu:0,cpu:1\"", d, text);
    for (size_t k = 0; k < i; ++k)
      TANDEM_CHECK(devices[k] != d, ErrorCode::kInvalidArgument,
                   "device '{}' is listed twice in '{}'; for several workers on one device use "
                   "workers_per_device (--workers-per-device)",
                   d, text);
  }
  return devices;
}

namespace parallel {

// No host has this many cores; a larger number is a typo (the Context checks the real count).
constexpr int kMaxCoreNumber = 65536;

std::vector<int> parse_core_list(const std::string& text) {
  std::vector<int> cores;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, ',')) {
    if (part.empty()) continue;
    auto dash = part.find('-');
    try {
      if (dash == std::string::npos) {
        cores.push_back(std::stoi(part));
      } else {
        int a = std::stoi(part.substr(0, dash)), b = std::stoi(part.substr(dash + 1));
        TANDEM_CHECK(a <= b, ErrorCode::kInvalidArgument, "core range '{}' is reversed", part);
        // Bounded before the loop: "0-2000000000" would otherwise list two billion cores.
        TANDEM_CHECK(a >= 0 && b < kMaxCoreNumber, ErrorCode::kInvalidArgument,
                     "core range '{}' goes beyond core {}", part, kMaxCoreNumber - 1);
        for (int c = a; c <= b; ++c) cores.push_back(c);
      }
    } catch (const std::logic_error&) {
      raise(ErrorCode::kInvalidArgument, "'{}' in core list '{}' is not a core number or range",
            part, text);
    }
  }
  return cores;
}

std::vector<DeviceSpec> resolve_devices(const std::vector<std::string>& devices,
                                        const std::vector<std::vector<int>>& core_lists,
                                        int host_cores) {
  TANDEM_CHECK(core_lists.empty() || core_lists.size() == devices.size(),
               ErrorCode::kInvalidArgument, "{} core lists given for {} devices", core_lists.size(),
               devices.size());
  std::vector<DeviceSpec> specs;
  int cpu_count = 0;
  for (const std::string& d : devices) {
    DeviceSpec s;
    s.name = d;
    auto colon = d.find(':');
    s.kind = d.substr(0, colon);
    std::string idx = colon == std::string::npos ? "" : d.substr(colon + 1);
    TANDEM_CHECK((s.kind == "cpu" || s.kind == "cuda") && !idx.empty() &&
                     idx.find_first_not_of("0123456789") == std::string::npos && idx.size() < 6,
                 ErrorCode::kInvalidArgument,
                 "bad device '{}': use cpu:N or cuda:N (e.g. \"cpu:0,cpu:1\")", d);
    s.index = std::stoi(idx);
    if (s.kind == "cpu") ++cpu_count;
    specs.push_back(s);
  }
  // Even split: the k-th cpu device listed gets cores [k*n/count, (k+1)*n/count); with more
  // devices than cores they wrap around (oversubscription).
  int k = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    DeviceSpec& s = specs[i];
    if (!core_lists.empty() && !core_lists[i].empty()) {
      s.cores = core_lists[i];
    } else if (s.kind == "cpu") {
      int n = std::max(1, host_cores);
      if (cpu_count <= n) {
        for (int c = k * n / cpu_count; c < (k + 1) * n / cpu_count; ++c) s.cores.push_back(c);
      } else {
        s.cores.push_back(k % n);
      }
    }
    if (s.kind == "cpu") ++k;
  }
  return specs;
}

std::vector<WorkerSlot> plan_workers(const std::vector<std::string>& devices,
                                     const std::vector<std::vector<int>>& core_lists,
                                     int workers_per_device) {
  TANDEM_CHECK(workers_per_device >= 1, ErrorCode::kInvalidArgument,
               "workers_per_device must be >= 1, got {}", workers_per_device);
  int host = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::string> names =
      devices.empty() ? parse_device_list(std::to_string(host)) : devices;
  std::vector<WorkerSlot> slots;
  for (const DeviceSpec& d : resolve_devices(names, core_lists, host)) {
    TANDEM_CHECK(d.kind == "cpu", ErrorCode::kUnsupported,
                 "device '{}': CUDA backend not available in this build", d.name);
    for (int k = 0; k < workers_per_device; ++k) {
      WorkerSlot w;
      w.index = static_cast<int>(slots.size());
      w.device = d;
      w.threads = std::max<int>(1, static_cast<int>(d.cores.size()) / workers_per_device);
      slots.push_back(w);
    }
  }
  return slots;
}

}  // namespace parallel
}  // namespace tandem

// The multi-device paths of `tandem run` and `tandem bench`.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/cli_common.h"
#include "core/error.h"

namespace tandem::cli {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

int run_on_devices(const ModelOptions& mopt, const DeviceOptions& dopt, int64_t batch, int loops,
                   bool verify) {
  ParallelOptions popt = dopt.to_options(mopt.model, mopt.input_shape);
  popt.max_tensor_bytes = mopt.max_tensor_bytes;
  popt.max_model_bytes = mopt.max_model_bytes;
  popt.verify_checksum = mopt.verify_checksum;
  popt.verbose = true;
  fmt::print("model: {}\ndevices: {} ({} mode), batch {}\n", popt.model_path,
             fmt::join(popt.devices, ","), popt.mode, batch);
  std::fflush(stdout);
  // The reference model takes the whole batch on one device; its symbolic dims size the inputs.
  Context ref_ctx;
  ref_ctx.thread_num = mopt.threads;
  ref_ctx.max_tensor_bytes = mopt.max_tensor_bytes;
  ref_ctx.max_model_bytes = mopt.max_model_bytes;
  ref_ctx.verify_checksum = mopt.verify_checksum;
  // Kept only to verify: otherwise this process would hold a second copy of the weights.
  std::optional<Model> reference = Model::build_from_file(popt.model_path, ref_ctx);
  std::vector<Tensor> inputs = random_inputs(*reference, batch, 1234, mopt.max_tensor_bytes);
  if (!verify) reference.reset();

  ParallelPredictor predictor(popt);
  auto build_start = Clock::now();
  predictor.build();
  fmt::print("all {} workers ready in {:.2f} s\n", predictor.stats().devices.size(),
             seconds_since(build_start));
  std::fflush(stdout);
  std::vector<Tensor> outputs = predictor.predict(inputs);  // warm-up
  auto start = Clock::now();
  for (int i = 0; i < loops; ++i) outputs = predictor.predict(inputs);
  double total = seconds_since(start) / loops;
  std::printf("Total predict time = %.6f\n", total);
  std::fflush(stdout);
  predictor.finalize();
  for (const Tensor& t : outputs)
    fmt::print("output {:<24} {:<8} {}\n", t.name(), dtype_name(t.dtype()), shape_str(t.shape()));
  if (!verify) {
    fmt::print("(not verified against one device: --no-verify)\n");
    return 0;
  }
  return verify_against_one_device(outputs, *reference, inputs);
}

namespace {

struct BenchResult {
  std::vector<double> latency_ms;
  double wall_s = 0;
  int64_t items = 0;
  ParallelStats stats;
};

BenchResult bench_one(ParallelOptions popt, const std::vector<Tensor>& inputs, int64_t batch,
                      int warmup, int loops, double duration_s, int concurrency,
                      const std::string& label) {
  ParallelPredictor predictor(popt);
  auto build_start = Clock::now();
  predictor.build();
  fmt::print("[{}] all {} workers ready in {:.2f} s\n", label, predictor.stats().devices.size(),
             seconds_since(build_start));
  for (int i = 0; i < warmup; ++i) predictor.predict(inputs);
  ParallelStats before = predictor.stats();  // busy time and items count from here on
  BenchResult r;
  const bool tty = ::isatty(1);
  std::deque<std::pair<Clock::time_point, std::future<std::vector<Tensor>>>> inflight;
  auto start = Clock::now();
  int issued = 0, done = 0;
  auto more = [&] { return duration_s > 0 ? seconds_since(start) < duration_s : issued < loops; };
  while (more() || !inflight.empty()) {
    while (more() && static_cast<int>(inflight.size()) < concurrency) {
      inflight.emplace_back(Clock::now(), predictor.submit(inputs));
      ++issued;
    }
    auto [t0, fut] = std::move(inflight.front());
    inflight.pop_front();
    fut.get();
    r.latency_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    ++done;
    if (tty) {
      double frac = duration_s > 0 ? std::min(1.0, seconds_since(start) / duration_s)
                                   : static_cast<double>(done) / loops;
      int width = 30, filled = static_cast<int>(frac * width);
      std::printf("\r%-8s [%s%s] %3d%%", label.c_str(), std::string(filled, '#').c_str(),
                  std::string(width - filled, ' ').c_str(), static_cast<int>(frac * 100));
      std::fflush(stdout);
    }
  }
  if (tty) std::printf("\r%60s\r", "");
  r.wall_s = seconds_since(start);
  r.items = static_cast<int64_t>(r.latency_ms.size()) * batch;
  r.stats = predictor.stats();
  r.stats.overhead_ms_total -= before.overhead_ms_total;
  r.stats.requests -= before.requests;
  for (size_t i = 0; i < r.stats.devices.size() && i < before.devices.size(); ++i) {
    r.stats.devices[i].busy_ms -= before.devices[i].busy_ms;
    r.stats.devices[i].items -= before.devices[i].items;
  }
  predictor.finalize();
  return r;
}

}  // namespace

int bench_on_devices(const ModelOptions& mopt, const DeviceOptions& dopt, int64_t batch, int warmup,
                     int loops, double duration_s, int concurrency, const std::string& json_path) {
  ParallelOptions popt = dopt.to_options(mopt.model, mopt.input_shape);
  popt.max_tensor_bytes = mopt.max_tensor_bytes;
  popt.max_model_bytes = mopt.max_model_bytes;
  popt.verify_checksum = mopt.verify_checksum;
  Context ctx;
  ctx.thread_num = 1;
  ctx.max_tensor_bytes = mopt.max_tensor_bytes;
  ctx.max_model_bytes = mopt.max_model_bytes;
  ctx.verify_checksum = mopt.verify_checksum;
  std::vector<Tensor> inputs = random_inputs(Model::build_from_file(popt.model_path, ctx), batch,
                                             1234, mopt.max_tensor_bytes);
  const size_t n = popt.devices.size();
  fmt::print("model: {}\ndevices: {} ({} mode), batch {}, concurrency {}\n", popt.model_path,
             fmt::join(popt.devices, ","), popt.mode, batch, concurrency);

  BenchResult all = bench_one(popt, inputs, batch, warmup, loops, duration_s, concurrency, "N");
  // T(1): the first device alone, with the same cores it has in the N-device run.
  ParallelOptions one = popt;
  one.devices = {popt.devices[0]};
  if (popt.core_lists.empty()) {
    one.core_lists = {};
    int host = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    auto cores = std::vector<int>();
    for (int c = 0; c < std::max<int>(1, host / static_cast<int>(n)); ++c) cores.push_back(c);
    one.core_lists = {cores};
  } else {
    one.core_lists = {popt.core_lists[0]};
  }
  BenchResult single =
      n > 1 ? bench_one(one, inputs, batch, warmup, loops, duration_s, concurrency, "1") : all;
  double t_n = all.items / all.wall_s, t_1 = single.items / single.wall_s;
  double efficiency = t_n / (static_cast<double>(n) * t_1);
  const auto& l = all.latency_ms;
  fmt::print("requests {}  wall {:.2f} s\n", l.size(), all.wall_s);
  fmt::print("latency ms: min {:.2f}  p50 {:.2f}  p90 {:.2f}  p99 {:.2f}  max {:.2f}\n",
             percentile(l, 0), percentile(l, 50), percentile(l, 90), percentile(l, 99),
             percentile(l, 100));
  fmt::print("throughput: {:.3f} items/s on {} devices; {:.3f} items/s on {} alone\n", t_n, n, t_1,
             popt.devices[0]);
  fmt::print("scaling efficiency E({}) = T({}) / ({}·T(1)) = {:.3f}\n", n, n, n, efficiency);
  double overhead_mean =
      all.stats.requests > 0 ? all.stats.overhead_ms_total / all.stats.requests : 0.0;
  fmt::print(
      "orchestration overhead per request (wall minus slowest shard's compute): {:.3f} ms "
      "mean\n",
      overhead_mean);
  for (const DeviceStats& d : all.stats.devices) {
    fmt::print("  {:<8} worker {}  items {:>6}  busy {:5.1f}%  {:<10}  restarts {} ({} in window)",
               d.device, d.worker, d.items, 100.0 * d.busy_ms / (all.wall_s * 1000), d.state,
               d.restarts, d.restarts_in_window);
    if (d.next_start_s >= 0)
      fmt::print("  next {} in {:.1f} s", d.up ? "restart" : "probe", d.next_start_s);
    if (!d.last_error.empty() && d.restarts > 0) fmt::print("  last: {}", d.last_error);
    fmt::print("\n");
  }
  if (!json_path.empty()) {
    nlohmann::json j;
    j["model"] = popt.model_path;
    j["devices"] = popt.devices;
    j["mode"] = popt.mode;
    j["batch"] = batch;
    j["concurrency"] = concurrency;
    j["requests"] = l.size();
    j["latency_ms"] = {{"min", percentile(l, 0)},
                       {"p50", percentile(l, 50)},
                       {"p90", percentile(l, 90)},
                       {"p99", percentile(l, 99)},
                       {"max", percentile(l, 100)}};
    j["throughput_items_per_s"] = t_n;
    j["throughput_one_device_items_per_s"] = t_1;
    j["scaling_efficiency"] = efficiency;
    j["overhead_ms_mean"] = overhead_mean;
    nlohmann::json devs = nlohmann::json::array();
    for (const DeviceStats& d : all.stats.devices)
      devs.push_back({{"device", d.device},
                      {"worker", d.worker},
                      {"items", d.items},
                      {"busy_share", d.busy_ms / (all.wall_s * 1000)},
                      {"state", d.state},
                      {"up", d.up},
                      {"restarts", d.restarts},
                      {"restarts_in_window", d.restarts_in_window},
                      {"next_start_s", d.next_start_s},
                      {"last_error", d.last_error}});
    j["devices_detail"] = devs;
    std::ofstream out(json_path);
    TANDEM_CHECK(out.good(), ErrorCode::kRuntime, "cannot write '{}'", json_path);
    out << j.dump(2) << "\n";
    fmt::print("wrote {}\n", json_path);
  }
  return 0;
}

}  // namespace tandem::cli

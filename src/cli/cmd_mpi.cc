// `tandem run --mpi` and `tandem bench --mpi`: the multi-device paths over the ranks of an MPI job.
// Rank 0 prints and decides; every other rank builds its own devices and serves rank 0 until it
// finishes. A failure that every rank sees (a build error) is printed once, by rank 0.
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/cli_common.h"
#include "core/error.h"
#ifdef TANDEM_HAVE_MPI
#include "tandem/mpi.h"
#endif

namespace tandem::cli {

#ifndef TANDEM_HAVE_MPI

namespace {
[[noreturn]] void no_mpi() {
  raise(ErrorCode::kUnsupported,
        "--mpi: this tandem was built without MPI; install Debian's libopenmpi-dev and "
        "openmpi-bin (bash tools/setup.sh does) and build again");
}
}  // namespace

int run_on_mpi(const ModelOptions&, const DeviceOptions&, int64_t, int, bool) {
  no_mpi();
}
int bench_on_mpi(const ModelOptions&, const DeviceOptions&, int64_t, int, int, const std::string&) {
  no_mpi();
}

#else

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

MpiOptions mpi_options(const ModelOptions& mopt, const DeviceOptions& dopt) {
  DeviceOptions d = dopt;
  if (d.devices.empty()) d.devices = "1";  // one cpu device: the rank's share of the host
  MpiOptions o;
  o.local = d.to_options(mopt.model, mopt.input_shape);
  o.local.max_tensor_bytes = mopt.max_tensor_bytes;
  o.local.max_model_bytes = mopt.max_model_bytes;
  o.local.verify_checksum = mopt.verify_checksum;
  // A rank's local runner restarts a hung worker after its own deadline and reruns the shard;
  // rank 0 gives it that long twice over before it calls the rank lost.
  o.deadline = 2 * o.local.deadline + std::chrono::seconds(10);
  o.liveness = std::chrono::milliseconds(static_cast<int64_t>(d.liveness_s * 1000));
  return o;
}

// Builds on every rank. On failure rank 0 rethrows (main prints it once) and the others return
// false: they have the same message.
bool build_all(MpiPredictor& mp) {
  try {
    mp.build();
    return true;
  } catch (const Error&) {
    if (mp.rank() == 0) throw;
    return false;
  }
}

// A rank other than 0: builds, then serves rank 0 until it finishes.
int serve_rank(MpiPredictor& mp) {
  if (!build_all(mp)) return 1;
  mp.serve();
  return 0;
}

void print_job(const MpiPredictor& mp, const MpiOptions& o, int64_t batch) {
  fmt::print("model: {}\nMPI ranks: {}; rank 0 on {}: devices {}; batch {}\n", o.local.model_path,
             mp.size(), mp.host(), fmt::join(o.local.devices, ","), batch);
  std::fflush(stdout);
}

// Per rank: items and, over a timed stretch of `wall_s` (0: none), how busy it was. With
// `before`, the counts since that snapshot (the timed requests, not the warm-up).
void print_ranks(const MpiStats& stats, double wall_s, const MpiStats* before = nullptr) {
  for (const std::string& l : stats.lost) fmt::print("lost: {}\n", l);
  for (size_t i = 0; i < stats.ranks.size(); ++i) {
    const MpiRankStats& r = stats.ranks[i];
    const MpiRankStats* b = before && i < before->ranks.size() ? &before->ranks[i] : nullptr;
    const int64_t items = r.items - (b ? b->items : 0);
    const double busy_ms = r.busy_ms - (b ? b->busy_ms : 0);
    std::string busy =
        wall_s > 0 ? fmt::format("  busy {:5.1f}%", 100.0 * busy_ms / (wall_s * 1000)) : "";
    fmt::print("  rank {:<3} {:<20} devices {}  items {:>6}{}  {:.2f} items/s\n", r.rank, r.host,
               r.devices, items, busy, r.items_per_s);
  }
}

std::vector<Tensor> reference_inputs(const ModelOptions& mopt, const std::string& path,
                                     int64_t batch, std::optional<Model>* keep) {
  Context ctx;
  ctx.thread_num = mopt.threads;
  ctx.max_tensor_bytes = mopt.max_tensor_bytes;
  ctx.max_model_bytes = mopt.max_model_bytes;
  ctx.verify_checksum = mopt.verify_checksum;
  Model model = Model::build_from_file(path, ctx);
  std::vector<Tensor> inputs = random_inputs(model, batch, 1234, mopt.max_tensor_bytes);
  if (keep) keep->emplace(std::move(model));
  return inputs;
}

}  // namespace

namespace {

class MpiRunner : public Runner {
 public:
  explicit MpiRunner(MpiOptions o) : options_(std::move(o)), mp_(options_) {}
  bool build() { return build_all(mp_); }
  std::vector<TensorInfo> inputs() const override { return mp_.inputs(); }
  std::vector<TensorInfo> outputs() const override { return mp_.outputs(); }
  std::vector<Tensor> predict(const std::vector<Tensor>& inputs) override {
    return mp_.predict(inputs);
  }
  std::string describe() const override {
    return fmt::format("{} MPI ranks (rank 0 on {}: devices {})", mp_.size(), mp_.host(),
                       fmt::join(options_.local.devices, ","));
  }
  bool leads() const override { return mp_.rank() == 0; }
  void serve() override { mp_.serve(); }
  void finalize() override { mp_.finalize(); }

 private:
  MpiOptions options_;
  MpiPredictor mp_;
};

}  // namespace

std::unique_ptr<Runner> make_mpi_runner(const ModelOptions& mopt, const DeviceOptions& dopt) {
  auto r = std::make_unique<MpiRunner>(mpi_options(mopt, dopt));
  if (!r->build()) return nullptr;
  return r;
}

int run_on_mpi(const ModelOptions& mopt, const DeviceOptions& dopt, int64_t batch, int loops,
               bool verify) {
  MpiOptions o = mpi_options(mopt, dopt);
  MpiPredictor mp(o);
  if (mp.rank() != 0) return serve_rank(mp);
  print_job(mp, o, batch);
  std::fflush(stdout);
  auto build_start = Clock::now();
  build_all(mp);
  fmt::print("all {} ranks ready in {:.2f} s\n", mp.size(), seconds_since(build_start));
  std::optional<Model> reference;
  std::vector<Tensor> inputs =
      reference_inputs(mopt, o.local.model_path, batch, verify ? &reference : nullptr);
  std::vector<Tensor> outputs = mp.predict(inputs);  // warm-up: the split learns each rank's speed
  auto start = Clock::now();
  for (int i = 0; i < loops; ++i) outputs = mp.predict(inputs);
  double total = seconds_since(start) / loops;
  std::printf("Total predict time = %.6f\n", total);
  MpiStats stats = mp.stats();
  print_ranks(stats, 0);
  fmt::print("MPI overhead per request (wall minus the slowest rank's compute): {:.3f} ms last\n",
             stats.overhead_ms_last);
  mp.finalize();
  for (const Tensor& t : outputs)
    fmt::print("output {:<24} {:<8} {}\n", t.name(), dtype_name(t.dtype()), shape_str(t.shape()));
  if (!verify) {
    fmt::print("(not verified against one device: --no-verify)\n");
    return 0;
  }
  return verify_against_one_device(outputs, *reference, inputs);
}

int bench_on_mpi(const ModelOptions& mopt, const DeviceOptions& dopt, int64_t batch, int warmup,
                 int loops, const std::string& json_path) {
  MpiOptions o = mpi_options(mopt, dopt);
  MpiPredictor mp(o);
  if (mp.rank() != 0) return serve_rank(mp);
  print_job(mp, o, batch);
  auto build_start = Clock::now();
  build_all(mp);
  double ready_s = seconds_since(build_start);
  fmt::print("all {} ranks ready in {:.2f} s\n", mp.size(), ready_s);
  std::vector<Tensor> inputs = reference_inputs(mopt, o.local.model_path, batch, nullptr);

  // Alternating rounds: all ranks, then rank 0 alone (its own runner, no MPI), so that load on a
  // shared machine falls on both alike.
  for (int i = 0; i < warmup; ++i) {
    mp.predict(inputs);
    mp.local().predict(inputs);
  }
  MpiStats before = mp.stats();
  std::vector<double> lat_n, lat_1;
  double wall_n = 0, wall_1 = 0;
  for (int i = 0; i < loops; ++i) {
    auto t0 = Clock::now();
    mp.predict(inputs);
    lat_n.push_back(seconds_since(t0) * 1000);
    wall_n += lat_n.back() / 1000;
    t0 = Clock::now();
    mp.local().predict(inputs);
    lat_1.push_back(seconds_since(t0) * 1000);
    wall_1 += lat_1.back() / 1000;
    if (::isatty(1)) {
      std::printf("\rrequests %d/%d", i + 1, loops);
      std::fflush(stdout);
    }
  }
  if (::isatty(1)) std::printf("\r%40s\r", "");
  MpiStats stats = mp.stats();
  const int n = mp.size();
  double t_n = loops * batch / wall_n, t_1 = loops * batch / wall_1;
  double efficiency = t_n / (n * t_1);
  double overhead_ms = (stats.overhead_ms_total - before.overhead_ms_total) /
                       std::max<int64_t>(1, stats.requests - before.requests);
  fmt::print("requests {} on {} ranks, {} on rank 0 alone\n", loops, n, loops);
  fmt::print("latency ms, {} ranks: p50 {:.2f}  p90 {:.2f}  min {:.2f}  max {:.2f}\n", n,
             percentile(lat_n, 50), percentile(lat_n, 90), percentile(lat_n, 0),
             percentile(lat_n, 100));
  fmt::print("latency ms, rank 0 alone: p50 {:.2f}  p90 {:.2f}  min {:.2f}  max {:.2f}\n",
             percentile(lat_1, 50), percentile(lat_1, 90), percentile(lat_1, 0),
             percentile(lat_1, 100));
  fmt::print("throughput: {:.3f} items/s on {} ranks; {:.3f} items/s on rank 0 alone\n", t_n, n,
             t_1);
  fmt::print("scaling efficiency E({}) = T({}) / ({}·T(1)) = {:.3f}\n", n, n, n, efficiency);
  fmt::print("MPI overhead per request (wall minus the slowest rank's compute): {:.3f} ms mean\n",
             overhead_ms);
  const double per = 1.0 / std::max<int64_t>(1, stats.requests - before.requests);
  fmt::print(
      "rank 0 per request: send inputs {:.3f} ms, own shard {:.3f} ms, wait for the others "
      "{:.3f} ms, gather outputs {:.3f} ms\n",
      (stats.send_ms_total - before.send_ms_total) * per,
      (stats.own_compute_ms_total - before.own_compute_ms_total) * per,
      (stats.wait_ms_total - before.wait_ms_total) * per,
      (stats.gather_ms_total - before.gather_ms_total) * per);
  print_ranks(stats, wall_n, &before);
  mp.finalize();
  if (!json_path.empty()) {
    nlohmann::json j;
    j["model"] = o.local.model_path;
    j["ranks"] = n;
    j["batch"] = batch;
    j["requests"] = loops;
    j["ready_s"] = ready_s;
    j["latency_ms"] = {{"p50", percentile(lat_n, 50)}, {"p90", percentile(lat_n, 90)}};
    j["latency_ms_rank0_alone"] = {{"p50", percentile(lat_1, 50)}, {"p90", percentile(lat_1, 90)}};
    j["throughput_items_per_s"] = t_n;
    j["throughput_rank0_alone_items_per_s"] = t_1;
    j["scaling_efficiency"] = efficiency;
    j["overhead_ms_mean"] = overhead_ms;
    nlohmann::json ranks = nlohmann::json::array();
    for (const MpiRankStats& r : stats.ranks)
      ranks.push_back({{"rank", r.rank},
                       {"host", r.host},
                       {"devices", r.devices},
                       {"items", r.items},
                       {"items_per_s", r.items_per_s}});
    j["ranks_detail"] = ranks;
    std::ofstream out(json_path);
    TANDEM_CHECK(out.good(), ErrorCode::kRuntime, "cannot write '{}'", json_path);
    out << j.dump(2) << "\n";
    fmt::print("wrote {}\n", json_path);
  }
  return 0;
}

#endif

}  // namespace tandem::cli

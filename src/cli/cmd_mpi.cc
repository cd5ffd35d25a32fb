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

// Per rank: items and, over a timed stretch of `wall_s` (0: none), how busy it was.
void print_ranks(const MpiStats& stats, double wall_s) {
  for (const std::string& l : stats.lost) fmt::print("lost: {}\n", l);
  for (const MpiRankStats& r : stats.ranks) {
    std::string busy =
        wall_s > 0 ? fmt::format("  busy {:5.1f}%", 100.0 * r.busy_ms / (wall_s * 1000)) : "";
    fmt::print("  rank {:<3} {:<20} devices {}  items {:>6}{}  {:.2f} items/s\n", r.rank, r.host,
               r.devices, r.items, busy, r.items_per_s);
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

  // Alternating rounds: all ranks; rank 0 alone (its own runner, no MPI); then each other rank
  // alone (the whole batch sent to it, timed by its own compute time, so without the hop), so
  // that load on a shared machine falls on every kind of round alike. The ranks alone give two
  // baselines: rank 0's speed times the ranks (the usual E), and the sum of every rank's own
  // speed, which is what a perfect split could reach when the ranks' cores differ in speed.
  const int n = mp.size();
  auto rank_busy = [&](int r) { return mp.stats().ranks[r].busy_ms; };
  for (int i = 0; i < warmup; ++i) {
    mp.predict(inputs);
    mp.local().predict(inputs);
    for (int r = 1; r < n; ++r) mp.predict_on(r, inputs);
  }
  std::vector<double> lat_n, lat_1;
  double wall_n = 0, wall_1 = 0;
  std::vector<double> alone_s(n, 0.0);  // seconds each rank computed, alone
  MpiStats rounds = mp.stats();         // per-rank items and busy time in the MPI rounds
  for (MpiRankStats& r : rounds.ranks) {
    r.items = 0;
    r.busy_ms = 0;
  }
  double overhead_ms = 0, send_ms = 0, own_ms = 0, wait_ms = 0, gather_ms = 0;
  for (int i = 0; i < loops; ++i) {
    MpiStats s0 = mp.stats();
    auto t0 = Clock::now();
    mp.predict(inputs);
    lat_n.push_back(seconds_since(t0) * 1000);
    wall_n += lat_n.back() / 1000;
    MpiStats s1 = mp.stats();
    for (size_t r = 0; r < rounds.ranks.size(); ++r) {
      rounds.ranks[r].items += s1.ranks[r].items - s0.ranks[r].items;
      rounds.ranks[r].busy_ms += s1.ranks[r].busy_ms - s0.ranks[r].busy_ms;
    }
    overhead_ms += s1.overhead_ms_total - s0.overhead_ms_total;
    send_ms += s1.send_ms_total - s0.send_ms_total;
    own_ms += s1.own_compute_ms_total - s0.own_compute_ms_total;
    wait_ms += s1.wait_ms_total - s0.wait_ms_total;
    gather_ms += s1.gather_ms_total - s0.gather_ms_total;
    t0 = Clock::now();
    mp.local().predict(inputs);
    lat_1.push_back(seconds_since(t0) * 1000);
    wall_1 += lat_1.back() / 1000;
    alone_s[0] += lat_1.back() / 1000;
    for (int r = 1; r < n; ++r) {
      double busy0 = rank_busy(r);
      mp.predict_on(r, inputs);
      alone_s[r] += (rank_busy(r) - busy0) / 1000;
    }
    if (::isatty(1)) {
      std::printf("\rrequests %d/%d", i + 1, loops);
      std::fflush(stdout);
    }
  }
  if (::isatty(1)) std::printf("\r%40s\r", "");
  MpiStats stats = mp.stats();
  rounds.lost = stats.lost;
  for (size_t r = 0; r < rounds.ranks.size(); ++r)
    rounds.ranks[r].items_per_s = stats.ranks[r].items_per_s;  // the estimate now, not before
  const double items = static_cast<double>(loops) * batch;
  double t_n = items / wall_n, t_1 = items / wall_1;
  double efficiency = t_n / (n * t_1);
  double t_sum = 0;
  for (int r = 0; r < n; ++r) t_sum += items / std::max(1e-9, alone_s[r]);
  double efficiency_own = t_n / t_sum;
  const double per = 1.0 / std::max(1, loops);
  fmt::print("requests {} on {} ranks, {} on each rank alone\n", loops, n, loops);
  fmt::print("latency ms, {} ranks: p50 {:.2f}  p90 {:.2f}  min {:.2f}  max {:.2f}\n", n,
             percentile(lat_n, 50), percentile(lat_n, 90), percentile(lat_n, 0),
             percentile(lat_n, 100));
  fmt::print("latency ms, rank 0 alone: p50 {:.2f}  p90 {:.2f}  min {:.2f}  max {:.2f}\n",
             percentile(lat_1, 50), percentile(lat_1, 90), percentile(lat_1, 0),
             percentile(lat_1, 100));
  fmt::print("throughput: {:.3f} items/s on {} ranks; alone:", t_n, n);
  for (int r = 0; r < n; ++r) fmt::print(" rank {} {:.3f}", r, items / std::max(1e-9, alone_s[r]));
  fmt::print(" items/s (rank 0: wall time; the others: their compute time)\n");
  fmt::print("scaling efficiency E({}) = T({}) / ({}·T(rank 0 alone)) = {:.3f}\n", n, n, n,
             efficiency);
  fmt::print("scaling efficiency against the ranks' own speeds, T({}) / Σ T(rank alone) = {:.3f}\n",
             n, efficiency_own);
  fmt::print("MPI overhead per request (wall minus the slowest rank's compute): {:.3f} ms mean\n",
             overhead_ms * per);
  fmt::print(
      "rank 0 per request: inputs delivered {:.3f} ms, own shard {:.3f} ms, wait for the others "
      "{:.3f} ms, gather outputs {:.3f} ms\n",
      send_ms * per, own_ms * per, wait_ms * per, gather_ms * per);
  print_ranks(rounds, wall_n);
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
    j["scaling_efficiency_vs_ranks_alone"] = efficiency_own;
    j["overhead_ms_mean"] = overhead_ms * per;
    nlohmann::json ranks = nlohmann::json::array();
    for (int r = 0; r < n; ++r) {
      const MpiRankStats& rs = rounds.ranks[r];
      ranks.push_back({{"rank", rs.rank},
                       {"host", rs.host},
                       {"devices", rs.devices},
                       {"items", rs.items},
                       {"items_per_s", rs.items_per_s},
                       {"alone_items_per_s", items / std::max(1e-9, alone_s[r])}});
    }
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

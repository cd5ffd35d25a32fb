// tandem bench: latency distribution and throughput of predict on one device.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backends/cpu/prepack.h"
#include "cli/accuracy.h"
#include "cli/cli_common.h"
#include "core/error.h"

namespace tandem::cli {

namespace {

struct BenchOptions {
  ModelOptions model;
  DeviceOptions devices;
  double duration_s = 0;
  int concurrency = 1;
  int64_t batch = 0;  // 0: 1 on one device, 2 on several
  int warmup = 2;
  int loops = 10;
  std::string json;
  // The accuracy check after timing (MindSpore Lite's benchmark does the same): the outputs
  // against a reference model's, or the same model's on another backend, on the same inputs.
  std::string reference;
  std::string reference_backend;
  std::string inputs;  // TensorProto .pb files (default: random)
  AccuracyThresholds thresholds;
};

double percentile(std::vector<double> sorted, double p) {
  if (sorted.empty()) return 0;
  double rank = p / 100.0 * (sorted.size() - 1);
  size_t lo = static_cast<size_t>(rank);
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

int run_bench(const BenchOptions& opt) {
  const bool check = !opt.reference.empty() || !opt.reference_backend.empty();
  TANDEM_CHECK(!check || opt.devices.devices.empty(), ErrorCode::kInvalidArgument,
               "--reference / --reference-backend check one device's outputs: not with --devices "
               "(the runner's outputs are checked by `tandem run --devices`)");
  TANDEM_CHECK(opt.inputs.empty() || opt.devices.devices.empty(), ErrorCode::kInvalidArgument,
               "--inputs is for one device: not with --devices");
  if (opt.devices.mpi) {
    TANDEM_CHECK(!check && opt.inputs.empty() && opt.duration_s == 0 && opt.concurrency == 1,
                 ErrorCode::kInvalidArgument,
                 "with --mpi: random inputs, --loops requests one at a time (no --reference, "
                 "--inputs, --duration or --concurrency)");
    return bench_on_mpi(opt.model, opt.devices, opt.batch > 0 ? opt.batch : 2, opt.warmup,
                        opt.loops, opt.json);
  }
  if (!opt.devices.devices.empty())
    return bench_on_devices(opt.model, opt.devices, opt.batch > 0 ? opt.batch : 2, opt.warmup,
                            opt.loops, opt.duration_s, opt.concurrency, opt.json);
  Model model = opt.model.build();
  std::vector<Tensor> inputs =
      opt.inputs.empty()
          ? random_inputs(model, opt.batch > 0 ? opt.batch : 1, 1234, opt.model.max_tensor_bytes)
          : read_input_files(opt.inputs);
  if (!opt.inputs.empty()) match_input_names(model, inputs);
  int64_t items = inputs.empty() || inputs[0].rank() == 0 ? 1 : inputs[0].dim(0);
  std::string path = opt.model.model.empty() ? default_model_path() : opt.model.model;
  fmt::print("model: {}\n", path);
  for (const Tensor& t : inputs) fmt::print("input  {:<24} {}\n", t.name(), shape_str(t.shape()));
  for (int i = 0; i < opt.warmup; ++i) model.predict(inputs);
  std::vector<double> ms;
  for (int i = 0; i < opt.loops; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    model.predict(inputs);
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (double v : ms) sum += v;
  double mean = sum / ms.size();
  const RunStats& s = model.last_stats();
  int threads = opt.model.threads;
  fmt::print("threads {}  warmup {}  loops {}  batch {}\n",
             threads ? std::to_string(threads) : std::string("all cores"), opt.warmup, opt.loops,
             items);
  fmt::print(
      "latency ms: min {:.2f}  p50 {:.2f}  p90 {:.2f}  p99 {:.2f}  max {:.2f}  mean {:.2f}\n",
      sorted.front(), percentile(sorted, 50), percentile(sorted, 90), percentile(sorted, 99),
      sorted.back(), mean);
  double throughput = items * 1000.0 / mean;
  fmt::print("throughput: {:.2f} items/s ({:.2f} predicts/s)\n", throughput, 1000.0 / mean);
  fmt::print("peak memory: {} (arena {}, {} without reuse)\n", human_bytes(s.peak_bytes),
             human_bytes(s.arena_bytes), human_bytes(s.unplanned_bytes));
  const cpu::PrepackCounts packs = cpu::prepack_counts();
  if (packs.from_file + packs.packed_here > 0)
    fmt::print(
        "prepacked weights: {} read in place from the .tandem file ({}), {} packed here "
        "({})\n",
        packs.from_file, human_bytes(packs.from_file_bytes), packs.packed_here,
        human_bytes(packs.packed_here_bytes));
  print_op_profile(s);
  size_t failed = 0;
  nlohmann::json accuracy = nlohmann::json::array();
  if (check) {
    ModelOptions ref = opt.model;
    if (!opt.reference.empty()) ref.model = opt.reference;
    ref.backend = !opt.reference_backend.empty() ? opt.reference_backend : opt.model.backend;
    TANDEM_CHECK(!opt.reference.empty() || ref.backend != opt.model.backend,
                 ErrorCode::kInvalidArgument,
                 "--reference-backend {} is --backend: nothing to compare", ref.backend);
    fmt::print("accuracy against {} (backend {}), same inputs:\n",
               ref.model.empty() ? path : ref.model, ref.backend);
    failed = print_accuracy(model.predict(inputs), ref.build().predict(inputs), opt.thresholds,
                            &accuracy);
  }
  if (!opt.json.empty()) {
    nlohmann::json j;
    j["model"] = path;
    j["threads"] = threads;
    j["batch"] = items;
    j["warmup"] = opt.warmup;
    j["loops"] = opt.loops;
    j["latency_ms"] = {{"min", sorted.front()},         {"p50", percentile(sorted, 50)},
                       {"p90", percentile(sorted, 90)}, {"p99", percentile(sorted, 99)},
                       {"max", sorted.back()},          {"mean", mean}};
    j["samples_ms"] = ms;
    j["throughput_items_per_s"] = throughput;
    j["peak_bytes"] = s.peak_bytes;
    j["arena_bytes"] = s.arena_bytes;
    j["prepacked_from_file"] = packs.from_file;
    j["prepacked_here"] = packs.packed_here;
    if (check) j["accuracy"] = accuracy;
    std::ofstream out(opt.json);
    TANDEM_CHECK(out.good(), ErrorCode::kRuntime, "cannot write '{}'", opt.json);
    out << j.dump(2) << "\n";
    fmt::print("wrote {}\n", opt.json);
  }
  TANDEM_CHECK(failed == 0, ErrorCode::kRuntime, "{} of {} outputs differ from the reference",
               failed, accuracy.size());
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure predict latency and throughput.");
  opt->model.add_to(cmd, false);
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  cmd->add_option("--batch", opt->batch,
                  "size of symbolic dimensions (default 1; 2 with --devices)")
      ->check(int_range(1));
  opt->devices.add_to(cmd);
  cmd->add_option("--duration", opt->duration_s,
                  "with --devices: run for this many seconds instead of --loops requests")
      ->check(real_range(0, kMaxSeconds));
  // Each request in flight holds its inputs and outputs.
  cmd->add_option("--concurrency", opt->concurrency,
                  "with --devices: requests kept in flight (default 1)")
      ->check(int_range(1, 1024));
  cmd->add_option("--warmup", opt->warmup, "untimed runs first (default 2)")
      ->check(int_range(0, kIntMax));
  cmd->add_option("--loops", opt->loops, "timed runs (default 10)")->check(int_range(1, kIntMax));
  cmd->add_option("--json", opt->json, "also write the figures as JSON (latency_ms.p50, ...)");
  cmd->add_option("--inputs", opt->inputs,
                  "comma-separated TensorProto .pb files, one per input (default: random)");
  cmd->add_option("--reference", opt->reference,
                  "after timing, check the outputs against this model's on the same inputs "
                  "(cosine similarity, max abs and mean relative error per output, as `tandem "
                  "compare`); exit status 1 when one fails");
  cmd->add_option("--reference-backend", opt->reference_backend,
                  "kernels of the reference: auto, cpu or ref (default --backend; alone, checks "
                  "the model against itself on these kernels)")
      ->check(CLI::IsMember({"auto", "cpu", "ref"}));
  cmd->add_option("--cosine-min", opt->thresholds.cosine_min,
                  "smallest cosine similarity that passes the check (default 0.9999)")
      ->check(real_range(-1, 1));
  cmd->add_option("--max-abs", opt->thresholds.max_abs,
                  "also fail an output whose max abs error is larger")
      ->check(real_range(0, 1e300));
  cmd->callback([opt, &exit_code] { exit_code = run_bench(*opt); });
  cmd->footer(
      "Examples:\n"
      "  tandem bench -m model.onnx --batch 4 --loops 50\n"
      "  tandem bench -m model16.tandem --reference model.onnx --cosine-min 0.9999\n"
      "  tandem bench -m model.onnx --devices cpu:0,cpu:1 --concurrency 4 --duration 30");
}

}  // namespace tandem::cli

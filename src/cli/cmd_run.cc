// tandem run: one predict on one model, with given or random inputs.
#include <filesystem>

#include "cli/cli_common.h"
#include "core/error.h"
#include "onnx/tensor_proto.h"

namespace tandem::cli {

namespace {

struct RunOptions {
  ModelOptions model;
  DeviceOptions devices;
  bool verify = true;
  std::string inputs;
  std::string output_dir;
  int64_t batch = 0;  // 0: 1 on one device, 2 on several (the seed's example)
  int loops = 1;
};

int run_model(const RunOptions& opt) {
  if (opt.devices.mpi) {
    TANDEM_CHECK(opt.inputs.empty() && opt.output_dir.empty(), ErrorCode::kInvalidArgument,
                 "--inputs and --output-dir are for single-device runs; with --mpi the inputs "
                 "are random and checked against one device");
    return run_on_mpi(opt.model, opt.devices, opt.batch > 0 ? opt.batch : 2, opt.loops, opt.verify);
  }
  if (!opt.devices.devices.empty()) {
    TANDEM_CHECK(opt.inputs.empty() && opt.output_dir.empty(), ErrorCode::kInvalidArgument,
                 "--inputs and --output-dir are for single-device runs; with --devices the "
                 "inputs are random and checked against one device");
    return run_on_devices(opt.model, opt.devices, opt.batch > 0 ? opt.batch : 2, opt.loops,
                          opt.verify);
  }
  Model model = opt.model.build();
  std::string path = opt.model.model.empty() ? default_model_path() : opt.model.model;
  fmt::print("model: {}\n", path);
  std::vector<Tensor> inputs =
      opt.inputs.empty()
          ? random_inputs(model, opt.batch > 0 ? opt.batch : 1, 1234, opt.model.max_tensor_bytes)
          : read_input_files(opt.inputs);
  if (!opt.inputs.empty()) match_input_names(model, inputs);
  for (const Tensor& t : inputs)
    fmt::print("input  {:<24} {:<8} {}{}\n", t.name().empty() ? "(by position)" : t.name(),
               dtype_name(t.dtype()), shape_str(t.shape()), opt.inputs.empty() ? " (random)" : "");
  std::vector<Tensor> outputs;
  double total_ms = 0;
  for (int i = 0; i < opt.loops; ++i) {
    outputs = model.predict(inputs);
    total_ms += model.last_stats().predict_ms;
  }
  for (const Tensor& t : outputs) {
    std::string summary;
    if (t.dtype() == DataType::kFloat32 && t.numel() > 0) {
      double sum = 0, sq = 0;
      for (int64_t i = 0; i < t.numel(); ++i) {
        sum += t.data<float>()[i];
        sq += double(t.data<float>()[i]) * t.data<float>()[i];
      }
      double mean = sum / t.numel();
      summary = fmt::format("  mean {:.4g}  std {:.4g}", mean,
                            std::sqrt(std::max(0.0, sq / t.numel() - mean * mean)));
    }
    fmt::print("output {:<24} {:<8} {}{}\n", t.name(), dtype_name(t.dtype()), shape_str(t.shape()),
               summary);
  }
  const RunStats& s = model.last_stats();
  fmt::print("predict time: {:.2f} ms{}\n", total_ms / opt.loops,
             opt.loops > 1 ? fmt::format(" (mean of {})", opt.loops) : "");
  fmt::print("peak memory: {} (arena {}, {} without reuse)\n", human_bytes(s.peak_bytes),
             human_bytes(s.arena_bytes), human_bytes(s.unplanned_bytes));
  print_op_profile(s);
  if (!opt.output_dir.empty()) {
    std::filesystem::create_directories(opt.output_dir);
    for (size_t i = 0; i < outputs.size(); ++i) {
      std::string p = (std::filesystem::path(opt.output_dir) / fmt::format("output_{}.pb", i));
      write_tensor_file(outputs[i], p);
      fmt::print("wrote {}\n", p);
    }
  }
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Run a model once and print its outputs' shapes.");
  opt->model.add_to(cmd, false);
  cmd->add_option("--inputs", opt->inputs,
                  "comma-separated TensorProto .pb files, one per input (default: random)");
  cmd->add_option("--output-dir", opt->output_dir, "write output_N.pb files here");
  cmd->add_option("--batch", opt->batch,
                  "size of symbolic dimensions for random inputs (default 1; 2 with --devices)")
      ->check(int_range(1));
  opt->devices.add_to(cmd);
  cmd->add_flag("--verify,!--no-verify", opt->verify,
                "with --devices: check the gathered outputs against one device running the "
                "whole batch (default on)");
  cmd->add_option("--loops", opt->loops, "predict this many times (time is the mean)")
      ->check(int_range(1, std::numeric_limits<int>::max()));
  cmd->callback([opt, &exit_code] { exit_code = run_model(*opt); });
}

}  // namespace tandem::cli

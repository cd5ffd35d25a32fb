// Pieces shared by the `tandem` subcommands.
#pragma once

#include <CLI/CLI.hpp>
#include <random>
#include <string>
#include <vector>

#include "tandem/model.h"

namespace tandem::cli {

// "sample:1,4,64,64;timestep:1" -> {sample: [1,4,64,64], timestep: [1]}. Throws tandem::Error
// with the offending part on bad syntax.
ShapeMap parse_shape_map(const std::string& text);

// The flagship model's path: models/sd_unet_tiny/model.onnx under the current directory or the
// source tree the binary was built from.
std::string default_model_path();

// Random inputs for the model's (fixed or symbolic) input shapes: symbolic dims take `batch`.
// Floats are uniform in [-1, 1]; integers in [0, 10); bools are random.
std::vector<Tensor> random_inputs(const Model& model, int64_t batch, uint32_t seed = 1234);

// Options every model-running subcommand takes.
struct ModelOptions {
  std::string model;
  std::string input_shape;
  int threads = 0;
  std::string backend = "auto";
  std::string device = "cpu";
  bool profile = false;
  void add_to(CLI::App* app, bool model_required);
  Model build() const;
};

std::string human_bytes(size_t bytes);

// With --profile: the per-op-type kernel times of the latest predict, largest first.
void print_op_profile(const RunStats& stats);

// Reads a comma-separated list of .pb tensor files.
std::vector<Tensor> read_input_files(const std::string& comma_list);

// Subcommands. Each registers itself on `app` and returns the callback's exit code through
// `exit_code` when it runs.
void add_run_command(CLI::App& app, int& exit_code);
void add_check_command(CLI::App& app, int& exit_code);
void add_info_command(CLI::App& app, int& exit_code);
void add_bench_command(CLI::App& app, int& exit_code);

}  // namespace tandem::cli

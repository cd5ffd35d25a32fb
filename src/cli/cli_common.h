// Pieces shared by the `tandem` subcommands.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tandem/model.h"
#include "tandem/parallel.h"

namespace tandem::cli {

// "sample:1,4,64,64;timestep:1" -> {sample: [1,4,64,64], timestep: [1]}. Throws tandem::Error
// with the offending part on bad syntax.
ShapeMap parse_shape_map(const std::string& text);

// The flagship model's path: models/sd_unet_tiny/model.onnx under the current directory or the
// source tree the binary was built from.
std::string default_model_path();

// Random inputs for the model's (fixed or symbolic) input shapes: symbolic dims take `batch`.
// Floats are uniform in [-1, 1]; integers in [0, 10); bools are random.
// Each input's size is checked (overflow, and `max_tensor_bytes`, 0: no limit) before it is made.
std::vector<Tensor> random_inputs(const Model& model, int64_t batch, uint32_t seed = 1234,
                                  size_t max_tensor_bytes = Context{}.max_tensor_bytes);

// Options every model-running subcommand takes.
struct ModelOptions {
  std::string model;
  std::string input_shape;
  int threads = 0;
  std::string backend = "auto";
  std::string device = "cpu";
  bool profile = false;
  size_t max_tensor_bytes = Context{}.max_tensor_bytes;
  size_t max_model_bytes = Context{}.max_model_bytes;
  std::string cache_dir;
  bool verify_checksum = true;
  void add_to(CLI::App* app, bool model_required);
  Context context() const;
  Model build() const;
};

std::string human_bytes(size_t bytes);

// Range checks for numeric options, with plain messages: "must be at least 1 (got 0)" (CLI11's
// PositiveNumber says "Value 0 not in range 0.000000 to 1797693…", the double maximum in 309
// digits). CLI11 puts the option's name in front and main() joins them into one line:
// "error: --batch must be at least 1 (got 0)". Text that is not a number is refused here too.
CLI::Validator int_range(int64_t min, int64_t max = std::numeric_limits<int64_t>::max());
// The same for real numbers; NaN and infinities are refused. `min_inclusive` false: "greater than".
CLI::Validator real_range(double min, double max, bool min_inclusive = true);
// Limits of those checks shared by several options. Threads beyond a machine's cores only
// oversubscribe it, and each one costs a stack; times past ~11 days are surely a typo, and keep
// seconds * 1000 well inside int64 milliseconds.
inline constexpr int64_t kMaxThreads = 1024;
inline constexpr double kMaxSeconds = 1e6;
// --max-tensor-bytes and --max-model-bytes (Context's size caps) on `app`.
void add_size_cap_options(CLI::App* app, size_t* max_tensor_bytes, size_t* max_model_bytes);

// With --profile: the per-op-type kernel times of the latest predict, largest first.
void print_op_profile(const RunStats& stats);

// Reads a comma-separated list of .pb tensor files.
std::vector<Tensor> read_input_files(const std::string& comma_list);
// Input files whose stored names are not all among the model's inputs are matched by position:
// their names are cleared.
void match_input_names(const Model& model, std::vector<Tensor>& inputs);

// Subcommands. Each registers itself on `app` and returns the callback's exit code through
// `exit_code` when it runs.
void add_run_command(CLI::App& app, int& exit_code);
void add_check_command(CLI::App& app, int& exit_code);
void add_info_command(CLI::App& app, int& exit_code);
void add_bench_command(CLI::App& app, int& exit_code);
void add_worker_command(CLI::App& app, int& exit_code);
void add_serve_command(CLI::App& app, int& exit_code);
void add_compare_command(CLI::App& app, int& exit_code);
void add_convert_command(CLI::App& app, int& exit_code);

// Options of the multi-device paths of `run` and `bench`.
struct DeviceOptions {
  std::string devices;  // "cpu:0,cpu:1" or a count; empty = single-device mode
  std::string cores;    // "0-3;4-7": one core list per device
  std::string mode = "processes";
  int workers_per_device = 1;
  double deadline_s = 120;
  bool convert_once = true;
  bool mpi = false;        // --mpi: split across the ranks of an MPI job as well (cmd_mpi.cc)
  double liveness_s = 10;  // --liveness: with --mpi, silence after which a rank is lost
  void add_to(CLI::App* app);
  ParallelOptions to_options(const std::string& model, const std::string& input_shape) const;
};

// Largest |a - b| over float outputs (other dtypes must match exactly); INFINITY with `problem`
// set when the outputs differ in number, dtype or shape, or a NaN sits on one side only.
double max_abs_difference(const std::vector<Tensor>& a, const std::vector<Tensor>& b,
                          std::string& problem);
// The seed's check: runs `reference` (one device) on the whole batch, prints the largest
// difference and the success or failure line; returns the exit status (0: within 1e-5).
int verify_against_one_device(const std::vector<Tensor>& outputs, Model& reference,
                              const std::vector<Tensor>& inputs);
// The p-th percentile (0-100) of the values, interpolated between ranks.
double percentile(std::vector<double> values, double p);

// The seed's run: build on every device, split the batch, print the seed's lines, and check the
// gathered outputs against one device running the whole batch.
int run_on_devices(const ModelOptions& model, const DeviceOptions& devices, int64_t batch,
                   int loops, bool verify);
// The same two over the ranks of an MPI job (`mpirun -np H tandem run|bench --mpi`): rank 0
// prints, the other ranks serve it. Without MPI in the build they fail saying how to get it.
int run_on_mpi(const ModelOptions& model, const DeviceOptions& devices, int64_t batch, int loops,
               bool verify);
int bench_on_mpi(const ModelOptions& model, const DeviceOptions& devices, int64_t batch, int warmup,
                 int loops, const std::string& json_path);
// Whatever runs whole requests for a command: one Model, a ParallelPredictor over --devices, or
// an MPI job. In an MPI job only rank 0 leads (reads inputs, predicts, writes outputs); the
// other ranks serve() it until it finalizes.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual std::vector<TensorInfo> inputs() const = 0;
  virtual std::vector<TensorInfo> outputs() const = 0;
  virtual std::vector<Tensor> predict(const std::vector<Tensor>& inputs) = 0;
  virtual std::string describe() const = 0;
  virtual bool leads() const { return true; }
  virtual void serve() {}
  virtual void finalize() {}
};
// Built and ready; throws on a build failure (in an MPI job: rank 0 throws, the other ranks get
// nullptr, since rank 0 prints the error for all).
std::unique_ptr<Runner> make_runner(const ModelOptions& model, const DeviceOptions& devices);
std::unique_ptr<Runner> make_mpi_runner(const ModelOptions& model, const DeviceOptions& devices);
void add_map_command(CLI::App& app, int& exit_code);

// Throughput and latency over several devices, with scaling efficiency against one device.
int bench_on_devices(const ModelOptions& model, const DeviceOptions& devices, int64_t batch,
                     int warmup, int loops, double duration_s, int concurrency,
                     const std::string& json_path);

}  // namespace tandem::cli

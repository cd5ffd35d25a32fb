// tandem convert: an .onnx model, its input shapes fixed and optimised once, written as a .tandem
// file that later builds map in place (docs/tandem-format.md).
#include <chrono>

#include "cli/cli_common.h"
#include "core/error.h"
#include "runtime/convert.h"

namespace tandem::cli {

namespace {

struct ConvertCliOptions {
  std::string model;
  std::string output;
  std::string input_shape;
  int64_t batch = 0;
  std::string target = "cpu";
  size_t max_tensor_bytes = Context{}.max_tensor_bytes;
  size_t max_model_bytes = Context{}.max_model_bytes;
};

int run_convert(const ConvertCliOptions& opt) {
  ConvertOptions options;
  options.input_shapes = parse_shape_map(opt.input_shape);
  options.batch = opt.batch;
  options.target = opt.target;
  options.limits = {opt.max_tensor_bytes, opt.max_model_bytes};
  auto start = std::chrono::steady_clock::now();
  ConvertSummary s = convert_to_tandem(opt.model, opt.output, options);
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  fmt::print("converted {} -> {} ({}) in {:.0f} ms\n", opt.model, opt.output,
             human_bytes(s.file_bytes), ms);
  fmt::print("target: {}; nodes: {} -> {}; weights: {}\n", opt.target, s.nodes_before,
             s.nodes_after, human_bytes(s.weight_bytes));
  for (const auto& [name, shape] : s.fixed_shapes)
    fmt::print("input {}: fixed to {}\n", name, shape_str(shape));
  return 0;
}

}  // namespace

void add_convert_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<ConvertCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "convert",
      "Convert an ONNX model into a .tandem file: input shapes fixed, the graph optimised for the "
      "target once, the weights stored 64-byte aligned. Building from it maps the file read-only "
      "and uses the weights in place (no parsing, no optimising, no copy); every command that "
      "takes a model takes it.");
  cmd->add_option("model", opt->model, "the .onnx model")->required();
  cmd->add_option("-o,--output", opt->output, "the .tandem file to write (replaced atomically)")
      ->required();
  cmd->add_option("--input-shape", opt->input_shape,
                  "fix input shapes, e.g. \"sample:1,4,64,64;timestep:1\"");
  cmd->add_option("--batch", opt->batch,
                  "fix the first dimension of every input whose first dimension is symbolic")
      ->check(int_range(1));
  cmd->add_option("--target", opt->target,
                  "cpu (the fast kernels: backends auto and cpu; default) or ref (the graph as "
                  "written, for --backend ref)")
      ->check(CLI::IsMember({"cpu", "ref"}));
  add_size_cap_options(cmd, &opt->max_tensor_bytes, &opt->max_model_bytes);
  cmd->callback([opt, &exit_code] { exit_code = run_convert(*opt); });
  cmd->footer(
      "Examples:\n"
      "  tandem convert model.onnx -o model.tandem --batch 2\n"
      "  tandem run -m model.tandem\n"
      "  tandem compare model.tandem model.onnx --batch 2 --max-abs 0   # same outputs, bit for "
      "bit\n"
      "A .tandem file is recognised by its first bytes, whatever its name. It holds weights in\n"
      "plain layout: the kernels still prepack them (per process) when they plan.");
}

}  // namespace tandem::cli

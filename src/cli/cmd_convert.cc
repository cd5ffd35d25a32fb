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
  bool no_prepack = false;
  std::string weights = "fp32";
  int prepack_threads = 1;
  size_t max_tensor_bytes = Context{}.max_tensor_bytes;
  size_t max_model_bytes = Context{}.max_model_bytes;
};

int run_convert(const ConvertCliOptions& opt) {
  ConvertOptions options;
  options.input_shapes = parse_shape_map(opt.input_shape);
  options.batch = opt.batch;
  options.target = opt.target;
  options.limits = {opt.max_tensor_bytes, opt.max_model_bytes};
  options.prepack = !opt.no_prepack;
  options.weights = opt.weights;
  options.prepack_threads = opt.prepack_threads;
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
  if (s.fp16_weights > 0)
    fmt::print("weights stored as fp16: {} tensors (widened to fp32 when loaded)\n",
               s.fp16_weights);
  if (!s.prepack_skipped.empty())
    fmt::print("prepacked weights: none ({})\n", s.prepack_skipped);
  else if (options.prepack && opt.target == "cpu")
    fmt::print("prepacked weights: {} layout{}, {}\n", s.prepacked_layouts,
               s.prepacked_layouts == 1 ? "" : "s", human_bytes(s.prepacked_bytes));
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
  cmd->add_flag("--no-prepack", opt->no_prepack,
                "store the weights in plain layout only: every process that loads the file "
                "reorders them for its kernels (private memory) when it plans");
  cmd->add_option("--prepack-threads", opt->prepack_threads,
                  "threads of the run that prepacks the weights (some kernels choose their "
                  "layout by the thread count; default 1, as a parallel-runner worker on one "
                  "core)")
      ->check(int_range(1));
  cmd->add_option("--weights", opt->weights,
                  "weight storage: fp32 (default) or fp16 (float32 weights of 1024 elements or "
                  "more rounded to float16: half the file; computed in float32, each process "
                  "widening its own copy, so no prepacked layouts; check the accuracy with "
                  "`tandem compare`)")
      ->check(CLI::IsMember({"fp32", "fp16"}));
  add_size_cap_options(cmd, &opt->max_tensor_bytes, &opt->max_model_bytes);
  cmd->callback([opt, &exit_code] { exit_code = run_convert(*opt); });
  cmd->footer(
      "Examples:\n"
      "  tandem convert model.onnx -o model.tandem --batch 2\n"
      "  tandem run -m model.tandem\n"
      "  tandem compare model.tandem model.onnx --batch 2 --max-abs 0   # same outputs, bit for "
      "bit\n"
      "  tandem convert model.onnx -o model16.tandem --batch 2 --weights fp16\n"
      "  tandem compare model16.tandem model.onnx --batch 2 --cosine-min 0.9999\n"
      "A .tandem file is recognised by its first bytes, whatever its name. Target cpu: the\n"
      "conversion runs the model once on zeros (the fixed shapes, else every symbolic dimension\n"
      "1) and stores, beside the plain weights, the layouts the kernels packed them into; a\n"
      "process that loads the file reads those in place (one copy per host, shared by every\n"
      "process that maps the file) wherever its kernels want the same layout, and packs its own\n"
      "only where they do not (another CPU, or shapes that choose another layout).");
}

}  // namespace tandem::cli

// tandem compare: how close one model's outputs are to a reference's on the same inputs: per
// output the cosine similarity, max abs error and mean relative error, and pass/fail against a
// threshold (the accuracy check of MindSpore Lite's benchmark tool). Two models (a converted or
// reduced-precision one against its original), or one model on two kernel sets (the fast kernels
// against the reference kernels).
#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/accuracy.h"
#include "cli/cli_common.h"
#include "core/error.h"

namespace tandem::cli {

namespace {

struct CompareOptions {
  ModelOptions model;                   // the model under test (A), with its backend
  std::string reference;                // B: the reference model; empty: A again, on
                                        // --reference-backend
  std::vector<std::string> positional;  // tandem compare A [B]
  std::string reference_backend;        // default: --backend when B is given, else ref
  std::string inputs;
  int64_t batch = 1;
  uint32_t seed = 1234;
  double cosine_min = 0.9999;
  double max_abs = -1;  // < 0: not checked
  std::string json;
};

int run_compare(CompareOptions opt) {
  TANDEM_CHECK(opt.positional.empty() || opt.model.model.empty(), ErrorCode::kInvalidArgument,
               "give the model either as the first argument or with --model, not both");
  TANDEM_CHECK(opt.positional.size() < 2 || opt.reference.empty(), ErrorCode::kInvalidArgument,
               "give the reference either as the second argument or with --reference, not both");
  if (!opt.positional.empty()) opt.model.model = opt.positional[0];
  if (opt.positional.size() > 1) opt.reference = opt.positional[1];
  TANDEM_CHECK(!opt.model.model.empty(), ErrorCode::kInvalidArgument,
               "no model: tandem compare MODEL [REFERENCE]");
  const std::string a_path = opt.model.model;
  const bool two_models = !opt.reference.empty();
  ModelOptions ref_opt = opt.model;
  if (two_models) ref_opt.model = opt.reference;
  ref_opt.backend = !opt.reference_backend.empty() ? opt.reference_backend
                    : two_models                   ? opt.model.backend
                                                   : "ref";
  TANDEM_CHECK(two_models || ref_opt.backend != opt.model.backend, ErrorCode::kInvalidArgument,
               "nothing to compare: give a reference model, or a --reference-backend other than "
               "--backend ({})",
               opt.model.backend);
  Model a = opt.model.build();
  Model b = ref_opt.build();
  fmt::print("model:     {} (backend {})\n", a_path, opt.model.backend);
  fmt::print("reference: {} (backend {})\n", ref_opt.model, ref_opt.backend);

  std::vector<Tensor> inputs =
      opt.inputs.empty() ? random_inputs(a, opt.batch, opt.seed, opt.model.max_tensor_bytes)
                         : read_input_files(opt.inputs);
  if (!opt.inputs.empty()) match_input_names(a, inputs);
  for (const Tensor& t : inputs)
    fmt::print("input      {:<24} {:<8} {}{}\n", t.name().empty() ? "(by position)" : t.name(),
               dtype_name(t.dtype()), shape_str(t.shape()), opt.inputs.empty() ? " (random)" : "");

  const std::vector<Tensor> got = a.predict(inputs);
  const std::vector<Tensor> want = b.predict(inputs);
  nlohmann::json report = nlohmann::json::array();
  const size_t failed = print_accuracy(got, want, {opt.cosine_min, opt.max_abs}, &report);
  if (!opt.json.empty()) {
    nlohmann::json j{{"model", a_path},
                     {"backend", opt.model.backend},
                     {"reference", ref_opt.model},
                     {"reference_backend", ref_opt.backend},
                     {"cosine_min", opt.cosine_min},
                     {"outputs", report},
                     {"pass", failed == 0}};
    std::ofstream out(opt.json);
    TANDEM_CHECK(out.good(), ErrorCode::kRuntime, "cannot write '{}'", opt.json);
    out << j.dump(2) << "\n";
    fmt::print("wrote {}\n", opt.json);
  }
  TANDEM_CHECK(failed == 0, ErrorCode::kRuntime, "{} of {} outputs differ from the reference",
               failed, got.size());
  fmt::print("all {} outputs agree\n", got.size());
  return 0;
}

}  // namespace

void add_compare_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<CompareOptions>();
  CLI::App* cmd = app.add_subcommand(
      "compare",
      "Compare a model's outputs with a reference on the same inputs: cosine similarity, max abs "
      "error and mean relative error per output, and pass/fail. With one model, compares its "
      "fast kernels (--backend) with the reference kernels (--reference-backend, default ref).");
  cmd->add_option("models", opt->positional, "MODEL [REFERENCE]: ONNX model files")->expected(0, 2);
  opt->model.add_to(cmd, false);
  cmd->add_option("--reference", opt->reference,
                  "the reference model (default: the model itself, on --reference-backend)");
  cmd->add_option("--reference-backend", opt->reference_backend,
                  "kernels for the reference: auto, cpu or ref (default: ref with one model, "
                  "--backend with two)")
      ->check(CLI::IsMember({"auto", "cpu", "ref"}));
  cmd->add_option("--inputs", opt->inputs,
                  "comma-separated TensorProto .pb files, one per input (default: random)");
  cmd->add_option("--batch", opt->batch, "size of symbolic dimensions for random inputs")
      ->check(int_range(1));
  cmd->add_option("--seed", opt->seed, "seed of the random inputs");
  cmd->add_option("--cosine-min", opt->cosine_min,
                  "smallest cosine similarity that passes (default 0.9999)")
      ->check(real_range(-1, 1));
  cmd->add_option("--max-abs", opt->max_abs, "also fail an output whose max abs error is larger")
      ->check(real_range(0, 1e300));
  cmd->add_option("--json", opt->json, "also write the figures as JSON here");
  cmd->callback([opt, &exit_code] { exit_code = run_compare(*opt); });
  cmd->footer(
      "Examples:\n"
      "  tandem compare converted.onnx original.onnx --inputs in0.pb,in1.pb\n"
      "  tandem compare model.onnx --backend cpu           # fast kernels vs reference kernels\n"
      "Exit status 0 when every output passes, 1 (with the failing outputs named) otherwise.");
}

}  // namespace tandem::cli

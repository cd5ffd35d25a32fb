// tandem info: what a model takes, gives and contains.
#include <filesystem>

#include "cli/cli_common.h"
#include "core/error.h"

namespace tandem::cli {

namespace {

std::string dims(const TensorInfo& info) {
  if (info.shape.empty()) return "[] or unknown";
  std::string s = "[";
  for (size_t i = 0; i < info.shape.size(); ++i) {
    if (i) s += ",";
    if (info.shape[i] >= 0) s += std::to_string(info.shape[i]);
    else s += i < info.dim_names.size() && !info.dim_names[i].empty() ? info.dim_names[i] : "?";
  }
  return s + "]";
}

int show_info(const ModelOptions& opt) {
  Model model = opt.build();
  std::string path = opt.model.empty() ? default_model_path() : opt.model;
  fmt::print("model: {} ({})\n", path, human_bytes(std::filesystem::file_size(path)));
  fmt::print("inputs:\n");
  for (const TensorInfo& i : model.inputs())
    fmt::print("  {:<28} {:<8} {}\n", i.name, dtype_name(i.dtype), dims(i));
  fmt::print("outputs:\n");
  for (const TensorInfo& o : model.outputs())
    fmt::print("  {:<28} {:<8} {}\n", o.name, dtype_name(o.dtype), dims(o));
  fmt::print("opsets:");
  for (const auto& [domain, version] : model.opset_imports())
    fmt::print(" {}={}", domain.empty() ? "ai.onnx" : domain, version);
  fmt::print("\nparameters: {}\n", model.parameter_count());
  auto hist = model.op_histogram();
  int total = 0;
  for (auto& [op, n] : hist) total += n;
  fmt::print("nodes: {} ({} op types)\n", total, hist.size());
  std::vector<std::pair<int, std::string>> sorted;
  for (auto& [op, n] : hist) sorted.emplace_back(-n, op);
  std::sort(sorted.begin(), sorted.end());
  for (auto& [n, op] : sorted) fmt::print("  {:<28} {}\n", op, -n);
  return 0;
}

}  // namespace

void add_info_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<ModelOptions>();
  CLI::App* cmd = app.add_subcommand(
      "info", "Show a model's inputs, outputs, opsets, op histogram and parameter count.");
  opt->add_to(cmd, false);
  cmd->callback([opt, &exit_code] { exit_code = show_info(*opt); });
}

}  // namespace tandem::cli

// tandem check: runs folders in the ONNX backend test-data layout and compares every output with
// its reference, with the tolerances of the ONNX backend tests (|a - b| <= atol + rtol * |b|).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "cli/cli_common.h"
#include "core/error.h"
#include "core/tensor_compare.h"
#include "onnx/tensor_proto.h"

namespace tandem::cli {

namespace fs = std::filesystem;

namespace {

struct CheckOptions {
  std::vector<std::string> paths;
  double rtol = 1e-3;
  double atol = 1e-7;
  std::string expected_failures;
  int threads = 1;
  std::string backend = "auto";
  bool quiet = false;
  size_t max_tensor_bytes = Context{}.max_tensor_bytes;
  size_t max_model_bytes = Context{}.max_model_bytes;
};

double element(const Tensor& t, int64_t i) {
  return element_as_double(t, i);
}

bool is_float(DataType d) {
  return d == DataType::kFloat32 || d == DataType::kFloat64 || d == DataType::kFloat16 ||
         d == DataType::kBFloat16;
}

// Empty when `got` matches `want`; otherwise what differs.
std::string compare(const Tensor& got, const Tensor& want, double rtol, double atol,
                    double& worst_abs) {
  if (got.dtype() != want.dtype())
    return fmt::format("dtype {} != expected {}", dtype_name(got.dtype()),
                       dtype_name(want.dtype()));
  if (got.shape() != want.shape())
    return fmt::format("shape {} != expected {}", shape_str(got.shape()), shape_str(want.shape()));
  const bool exact = !is_float(want.dtype());
  int64_t bad = 0, first_bad = -1, worst_index = -1;
  for (int64_t i = 0; i < want.numel(); ++i) {
    double a = element(got, i), b = element(want, i);
    bool ok;
    if (std::isnan(b))
      ok = std::isnan(a);
    else if (std::isinf(b))
      ok = a == b;
    else if (exact)
      ok = a == b;
    else
      ok = std::abs(a - b) <= atol + rtol * std::abs(b);
    double err = std::isnan(a) != std::isnan(b) ? INFINITY : std::abs(a - b);
    if (!std::isnan(err) && err > worst_abs) {
      worst_abs = err;
      worst_index = i;
    }
    if (!ok) {
      if (first_bad < 0) first_bad = i;
      ++bad;
    }
  }
  if (!bad) return {};
  int64_t at = worst_index >= 0 ? worst_index : first_bad;
  return fmt::format(
      "{} of {} values differ; worst |got-want| = {:.3g} at index {} (got {}, want "
      "{}; rtol {}, atol {})",
      bad, want.numel(), worst_abs, at, element(got, at), element(want, at), rtol, atol);
}

std::vector<fs::path> sorted_entries(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Files "<prefix>N.pb" in numeric order.
std::vector<fs::path> numbered_files(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> out;
  for (int i = 0;; ++i) {
    fs::path p = dir / fmt::format("{}{}.pb", prefix, i);
    if (!fs::exists(p)) break;
    out.push_back(p);
  }
  return out;
}

struct CaseResult {
  bool passed = false;
  std::string message;
  double worst = 0;
  int sets = 0;
};

CaseResult run_case(const fs::path& dir, const CheckOptions& opt) {
  CaseResult r;
  try {
    Context ctx;
    ctx.thread_num = opt.threads;
    ctx.backend = opt.backend;
    ctx.max_tensor_bytes = opt.max_tensor_bytes;
    ctx.max_model_bytes = opt.max_model_bytes;
    // Test data is as untrusted as the model: each .pb must be a regular file inside the case's
    // folder (not a symlink out of it, not a FIFO).
    auto read_data = [&](const fs::path& set, const fs::path& p) {
      return read_tensor_file_inside(dir.string(), (set.filename() / p.filename()).string(),
                                     opt.max_tensor_bytes);
    };
    Model model = Model::build_from_file((dir / "model.onnx").string(), ctx);
    auto sets = sorted_entries(dir, "test_data_set_");
    TANDEM_CHECK(!sets.empty(), ErrorCode::kNotFound, "no test_data_set_* folder in '{}'",
                 dir.string());
    for (const fs::path& set : sets) {
      std::vector<Tensor> inputs;
      for (const fs::path& p : numbered_files(set, "input_")) {
        inputs.push_back(read_data(set, p));
        inputs.back().set_name("");  // match by position: file names may be stale
      }
      std::vector<Tensor> want;
      for (const fs::path& p : numbered_files(set, "output_")) want.push_back(read_data(set, p));
      // The test data stores bfloat16 tensors as uint16 bit patterns.
      auto model_inputs = model.inputs();
      for (size_t i = 0; i < inputs.size() && i < model_inputs.size(); ++i)
        if (inputs[i].dtype() == DataType::kUInt16 && model_inputs[i].dtype == DataType::kBFloat16)
          inputs[i] = Tensor::copy_of(DataType::kBFloat16, inputs[i].shape(), inputs[i].raw());
      std::vector<Tensor> got = model.predict(inputs);
      for (size_t i = 0; i < want.size() && i < got.size(); ++i)
        if (want[i].dtype() == DataType::kUInt16 && got[i].dtype() == DataType::kBFloat16)
          want[i] = Tensor::copy_of(DataType::kBFloat16, want[i].shape(), want[i].raw());
      TANDEM_CHECK(got.size() >= want.size(), ErrorCode::kRuntime,
                   "{} outputs produced, {} expected", got.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i) {
        std::string diff = compare(got[i], want[i], opt.rtol, opt.atol, r.worst);
        if (!diff.empty()) {
          r.message = fmt::format("{}: output {} '{}': {}", set.filename().string(), i,
                                  got[i].name(), diff);
          return r;
        }
      }
      ++r.sets;
    }
    r.passed = true;
  } catch (const Error& e) {
    r.message = fmt::format("{}: {}", error_code_name(e.code()), e.what());
  } catch (const std::exception& e) {
    r.message = fmt::format("exception: {}", e.what());
  }
  return r;
}

// Lines "case_name  [# reason]"; blank lines and lines starting with '#' are ignored.
std::map<std::string, std::string> read_expected_failures(const std::string& path) {
  std::map<std::string, std::string> cases;
  if (path.empty()) return cases;
  std::ifstream in(path);
  TANDEM_CHECK(in.good(), ErrorCode::kNotFound, "expected-failure list '{}' cannot be read", path);
  std::string line;
  while (std::getline(in, line)) {
    auto hash = line.find('#');
    std::string reason = hash == std::string::npos ? "" : line.substr(hash + 1);
    std::string name = line.substr(0, hash);
    name.erase(0, name.find_first_not_of(" \t"));
    name.erase(name.find_last_not_of(" \t\r") + 1);
    if (!name.empty()) cases[name] = reason;
  }
  return cases;
}

int run_check(const CheckOptions& opt) {
  std::vector<fs::path> cases;
  for (const std::string& p : opt.paths) {
    fs::path path(p);
    TANDEM_CHECK(fs::exists(path), ErrorCode::kNotFound, "'{}' does not exist", p);
    if (fs::is_regular_file(path) && path.filename() == "model.onnx") path = path.parent_path();
    if (fs::exists(path / "model.onnx")) {
      cases.push_back(path);
      continue;
    }
    size_t before = cases.size();
    for (const fs::path& sub : sorted_entries(path, ""))
      if (fs::exists(sub / "model.onnx")) cases.push_back(sub);
    TANDEM_CHECK(cases.size() > before, ErrorCode::kNotFound,
                 "'{}' holds no model.onnx, nor folders that do", p);
  }
  auto expected = read_expected_failures(opt.expected_failures);
  int passed = 0, failed = 0, skipped = 0;
  std::vector<std::string> new_failures, new_passes;
  for (const fs::path& dir : cases) {
    std::string name = dir.filename().string();
    CaseResult r = run_case(dir, opt);
    bool known = expected.count(name) != 0;
    if (r.passed && !known) {
      ++passed;
      if (!opt.quiet)
        fmt::print("ok      {} ({} data set{}, worst abs error {:.3g})\n", name, r.sets,
                   r.sets == 1 ? "" : "s", r.worst);
    } else if (r.passed && known) {
      ++failed;
      new_passes.push_back(name);
      fmt::print("PASSED  {} — listed as an expected failure in {}: remove it from the list\n",
                 name, opt.expected_failures);
    } else if (known) {
      ++skipped;
      if (!opt.quiet) fmt::print("xfail   {}: {}\n", name, r.message);
    } else {
      ++failed;
      new_failures.push_back(name);
      fmt::print("FAIL    {}: {}\n", name, r.message);
    }
    std::fflush(stdout);
  }
  if (!expected.empty())
    fmt::print("({} known failures from {} were run and reported as skipped)\n", skipped,
               opt.expected_failures);
  if (!new_passes.empty())
    fmt::print("now passing, remove from the expected-failure list: {}\n",
               fmt::join(new_passes, " "));
  fmt::print("{} passed, {} failed, {} skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}

}  // namespace

void add_check_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<CheckOptions>();
  CLI::App* cmd = app.add_subcommand(
      "check",
      "Run models in the ONNX test-data layout (model.onnx + test_data_set_*/input_N.pb, "
      "output_N.pb) and compare with the reference outputs.");
  cmd->add_option("paths", opt->paths,
                  "case folders, or folders of case folders (e.g. "
                  "/usr/share/libonnx-testdata/data/node)")
      ->required();
  // A NaN tolerance would make every comparison fail (or, written as !(a > b), pass).
  constexpr double kAnyFinite = std::numeric_limits<double>::max();
  cmd->add_option("--rtol", opt->rtol, "relative tolerance (default 1e-3, as the ONNX tests)")
      ->check(real_range(0, kAnyFinite));
  cmd->add_option("--atol", opt->atol, "absolute tolerance (default 1e-7, as the ONNX tests)")
      ->check(real_range(0, kAnyFinite));
  cmd->add_option("--expected-failures", opt->expected_failures,
                  "file listing cases known to fail (one per line, '# reason' allowed): they "
                  "are reported as skipped; a listed case that passes is an error");
  cmd->add_option("-t,--threads", opt->threads, "intra-op threads per model (default 1)")
      ->check(int_range(0, kMaxThreads));
  cmd->add_option("--backend", opt->backend, "kernels: auto (fast where available), cpu or ref")
      ->check(CLI::IsMember({"auto", "cpu", "ref"}));
  cmd->add_flag("-q,--quiet", opt->quiet, "print only failures and the summary");
  add_size_cap_options(cmd, &opt->max_tensor_bytes, &opt->max_model_bytes);
  cmd->callback([opt, &exit_code] { exit_code = run_check(*opt); });
}

}  // namespace tandem::cli

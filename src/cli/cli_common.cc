#include "cli/cli_common.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <type_traits>

#include "core/checked.h"
#include "core/dtype_visit.h"
#include "core/error.h"
#include "core/half.h"
#include "onnx/tensor_proto.h"
#include "parallel/device.h"

namespace tandem::cli {

namespace fs = std::filesystem;

ShapeMap parse_shape_map(const std::string& text) {
  ShapeMap shapes;
  std::stringstream entries(text);
  std::string entry;
  while (std::getline(entries, entry, ';')) {
    if (entry.find_first_not_of(" \t") == std::string::npos) continue;
    auto colon = entry.rfind(':');
    TANDEM_CHECK(colon != std::string::npos && colon > 0, ErrorCode::kInvalidArgument,
                 "--input-shape entry '{}' should look like name:d0,d1,...", entry);
    std::string name = entry.substr(0, colon);
    name.erase(0, name.find_first_not_of(" \t"));
    Shape shape;
    std::stringstream dims(entry.substr(colon + 1));
    std::string dim;
    while (std::getline(dims, dim, ',')) {
      char* end = nullptr;
      long long d = std::strtoll(dim.c_str(), &end, 10);
      TANDEM_CHECK(!dim.empty() && end && *end == '\0' && d > 0, ErrorCode::kInvalidArgument,
                   "--input-shape entry '{}': '{}' is not a positive dimension", entry, dim);
      shape.push_back(d);
    }
    TANDEM_CHECK(!shape.empty(), ErrorCode::kInvalidArgument,
                 "--input-shape entry '{}' has no dimensions", entry);
    shapes[name] = shape;
  }
  return shapes;
}

std::string default_model_path() {
  const std::string rel = "models/sd_unet_tiny/model.onnx";
  if (fs::exists(rel)) return rel;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    // build/bin/tandem -> <source>/models/...
    for (fs::path dir = exe.parent_path(); !dir.empty() && dir != dir.root_path();
         dir = dir.parent_path()) {
      if (fs::exists(dir / rel)) return (dir / rel).string();
    }
  }
  return rel;
}

// The dtypes random_inputs fills besides float16.
template <typename T>
struct RandomFillable : std::bool_constant<std::is_same_v<T, float> || std::is_same_v<T, double> ||
                                           std::is_same_v<T, int64_t> ||
                                           std::is_same_v<T, int32_t> || std::is_same_v<T, bool>> {
};

std::vector<Tensor> random_inputs(const Model& model, int64_t batch, uint32_t seed,
                                  size_t max_tensor_bytes) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> real(-1.f, 1.f);
  std::uniform_int_distribution<int> integer(0, 9);
  std::vector<Tensor> inputs;
  bool any_symbolic = false;
  for (const TensorInfo& info : model.inputs()) {
    Shape shape = info.shape;
    for (int64_t& d : shape)
      if (d < 0) d = batch, any_symbolic = true;
    const std::string what = fmt::format("random input '{}'", info.name);
    TANDEM_CHECK(dtype_size(info.dtype) > 0, ErrorCode::kUnsupported,
                 "cannot make random data for input '{}' of dtype {}", info.name,
                 dtype_name(info.dtype));
    check_tensor_cap(checked_nbytes(info.dtype, shape, what), max_tensor_bytes, what, shape);
    Tensor t(info.dtype, shape, info.name);
    const int64_t n = t.numel();
    // Floats in [-1, 1), integers in [0, 9], bools either way.
    auto fill = [&](auto tag) {
      using T = decltype(tag);
      T* out = t.data<T>();
      for (int64_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<T, bool>)
          out[i] = integer(rng) % 2;
        else if constexpr (std::is_floating_point_v<T>)
          out[i] = real(rng);
        else
          out[i] = integer(rng);
      }
    };
    if (info.dtype == DataType::kFloat16) {
      for (int64_t i = 0; i < n; ++i) t.data<uint16_t>()[i] = float_to_half(real(rng));
    } else if (!visit_dtype<RandomFillable>(info.dtype, fill)) {
      raise(ErrorCode::kUnsupported, "cannot make random data for input '{}' of dtype {}",
            info.name, dtype_name(info.dtype));
    }
    inputs.push_back(std::move(t));
  }
  // A model whose shapes are all fixed (declared so, or a .tandem converted with --batch or
  // --input-shape) runs at its own batch: say so rather than run another batch than asked.
  if (!any_symbolic && batch != 1 && !inputs.empty())
    fmt::print(stderr,
               "note: the model's input shapes are all fixed ({} is {}): batch {} does not apply; "
               "it runs at its own shapes\n",
               inputs[0].name(), shape_str(inputs[0].shape()), batch);
  return inputs;
}

CLI::Validator int_range(int64_t min, int64_t max) {
  const bool open_ended = max == std::numeric_limits<int64_t>::max();
  std::string range =
      open_ended ? fmt::format("at least {}", min) : fmt::format("between {} and {}", min, max);
  auto check = [min, max, range](const std::string& text) -> std::string {
    errno = 0;
    char* end = nullptr;
    long long value = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || end != text.c_str() + text.size())
      return fmt::format("must be a whole number (got '{}')", text);
    if (errno == ERANGE || value < min || value > max)
      return fmt::format("must be {} (got {})", range, text);
    return {};
  };
  return CLI::Validator(check,
                        open_ended ? fmt::format(">={}", min) : fmt::format("{}..{}", min, max));
}

CLI::Validator real_range(double min, double max, bool min_inclusive) {
  auto check = [min, max, min_inclusive](const std::string& text) -> std::string {
    char* end = nullptr;
    double value = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value))
      return fmt::format("must be a finite number (got '{}')", text);
    if (min_inclusive ? value < min : value <= min)
      return fmt::format("must be {} {:g} (got {})", min_inclusive ? "at least" : "greater than",
                         min, text);
    if (value > max) return fmt::format("must be at most {:g} (got {})", max, text);
    return {};
  };
  std::string shown = max == std::numeric_limits<double>::max()
                          ? fmt::format("{}{:g}", min_inclusive ? ">=" : ">", min)
                          : fmt::format("{}{:g}..{:g}", min_inclusive ? "" : ">", min, max);
  return CLI::Validator(check, shown);
}

void ModelOptions::add_to(CLI::App* app, bool model_required) {
  auto* opt =
      app->add_option("-m,--model", model, "model file: .onnx, or .tandem from `tandem convert`");
  if (model_required)
    opt->required();
  else
    opt->description(
        "model file: .onnx or .tandem (default: the flagship models/sd_unet_tiny/model.onnx)");
  app->add_option("--input-shape", input_shape,
                  "fix input shapes, e.g. \"sample:1,4,64,64;timestep:1\"");
  app->add_option("-t,--threads", threads, "intra-op threads (0 = one per core)")
      ->check(int_range(0, kMaxThreads));
  app->add_option("--backend", backend, "kernels: auto (fast where available), cpu or ref")
      ->check(CLI::IsMember({"auto", "cpu", "ref"}));
  app->add_option("--device", device, "device: cpu or cpu:N");
  app->add_flag("--profile", profile, "time each op type and print the breakdown");
  add_size_cap_options(app, &max_tensor_bytes, &max_model_bytes);
  app->add_option("--cache-dir", cache_dir,
                  "keep converted models (.tandem) in this folder and map them on later builds of "
                  "the same .onnx bytes, shapes and backend (default: $TANDEM_CACHE_DIR)")
      ->each([](const std::string& dir) {
        // Worker processes inherit the environment: they use the same cache.
        setenv("TANDEM_CACHE_DIR", dir.c_str(), 1);
      });
  app->add_flag("!--no-verify-checksum", verify_checksum,
                "load a .tandem model without reading all of it to check its checksum (which "
                "catches a damaged file, not a hostile one: every field is checked either way); "
                "the weights' pages are then read only where the kernels use them");
}

void add_size_cap_options(CLI::App* app, size_t* max_tensor_bytes, size_t* max_model_bytes) {
  app->add_option("--max-tensor-bytes", *max_tensor_bytes,
                  fmt::format("refuse a model that declares or needs a tensor larger than this "
                              "(0 = no limit; default {})",
                              *max_tensor_bytes));
  app->add_option("--max-model-bytes", *max_model_bytes,
                  fmt::format("refuse a model whose weights add up to more than this (0 = no "
                              "limit; default {})",
                              *max_model_bytes));
}

Context ModelOptions::context() const {
  Context ctx;
  ctx.thread_num = threads;
  ctx.backend = backend;
  ctx.device = device;
  ctx.profile = profile;
  ctx.max_tensor_bytes = max_tensor_bytes;
  ctx.max_model_bytes = max_model_bytes;
  ctx.cache_dir = cache_dir;
  ctx.verify_checksum = verify_checksum;
  return ctx;
}

Model ModelOptions::build() const {
  return Model::build_from_file(model.empty() ? default_model_path() : model, context(),
                                parse_shape_map(input_shape));
}

void DeviceOptions::add_to(CLI::App* app) {
  app->add_option("--devices", devices,
                  "run on several devices at once: \"cpu:0,cpu:1\" or a count (one worker "
                  "process per device; the batch is split across them)");
  app->add_option("--cores", cores, "explicit cores per device, e.g. \"0-3;4-7\"");
  app->add_option("--mode", mode, "processes (default) or threads")
      ->check(CLI::IsMember({"processes", "threads"}));
  // A process each: more than a few per device only oversubscribes the cores.
  app->add_option("--workers-per-device", workers_per_device, "workers on each device")
      ->check(int_range(1, 64));
  // Converted to milliseconds (to_options): at least 1 ms, and small enough to convert exactly.
  app->add_option("--deadline", deadline_s,
                  "seconds a shard may take before its worker counts as hung (default 120)")
      ->check(real_range(0.001, kMaxSeconds));
  app->add_flag("--mpi", mpi,
                "run as one rank of an MPI job (mpirun -np H tandem ... --mpi): each rank runs "
                "its own devices (--devices, default one cpu device with the rank's share of the "
                "host's cores), rank 0 splits every batch over the ranks by their measured speed "
                "and prints; the gathered result is checked as with --devices");
  app->add_option("--liveness", liveness_s,
                  "with --mpi: seconds rank 0 may hear nothing from a rank during a request "
                  "(each sends a heartbeat twice a second) before it takes the rank for lost and "
                  "runs the request again on the others (default 10; needs mpirun "
                  "--enable-recovery, else mpirun ends the job when a rank dies)")
      ->check(real_range(1, kMaxSeconds));
  app->add_flag("--convert-once,!--no-convert-once", convert_once,
                "given an .onnx, convert it once in this process into a sealed in-memory .tandem "
                "file (weights prepacked) that every worker maps: one physical copy of the "
                "weights per host, no parsing in the workers (default; --no-convert-once: every "
                "worker loads the .onnx itself)");
}

ParallelOptions DeviceOptions::to_options(const std::string& model,
                                          const std::string& input_shape) const {
  ParallelOptions o;
  o.model_path = model.empty() ? default_model_path() : model;
  o.devices = parse_device_list(devices);
  if (!cores.empty()) {
    std::stringstream ss(cores);
    std::string part;
    while (std::getline(ss, part, ';')) o.core_lists.push_back(parallel::parse_core_list(part));
  }
  o.mode = mode;
  o.workers_per_device = workers_per_device;
  o.convert_once = convert_once;
  o.input_shapes = parse_shape_map(input_shape);
  o.deadline = std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000));
  return o;
}

std::string human_bytes(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", v, units[u]);
}

void print_op_profile(const RunStats& stats) {
  if (stats.op_time_ms.empty()) return;
  double total = 0;
  std::vector<std::pair<double, std::string>> rows;
  for (const auto& [op, ms] : stats.op_time_ms) {
    rows.emplace_back(ms, op);
    total += ms;
  }
  std::sort(rows.rbegin(), rows.rend());
  fmt::print("time per op type (last predict):\n");
  for (const auto& [ms, op] : rows)
    fmt::print("  {:<24} {:9.2f} ms  {:5.1f}%\n", op, ms, total > 0 ? 100 * ms / total : 0);
}

std::vector<Tensor> read_input_files(const std::string& comma_list) {
  std::vector<Tensor> tensors;
  std::stringstream ss(comma_list);
  std::string path;
  while (std::getline(ss, path, ','))
    if (!path.empty()) tensors.push_back(read_tensor_file(path));
  return tensors;
}

void match_input_names(const Model& model, std::vector<Tensor>& inputs) {
  bool names_ok = true;
  for (const Tensor& t : inputs) {
    bool found = false;
    for (const TensorInfo& i : model.inputs()) found = found || i.name == t.name();
    names_ok = names_ok && found;
  }
  if (!names_ok)
    for (Tensor& t : inputs) t.set_name("");
}

double max_abs_difference(const std::vector<Tensor>& a, const std::vector<Tensor>& b,
                          std::string& problem) {
  if (a.size() != b.size()) {
    problem = fmt::format("{} outputs vs {}", a.size(), b.size());
    return INFINITY;
  }
  double worst = 0;
  for (size_t o = 0; o < a.size(); ++o) {
    if (a[o].shape() != b[o].shape() || a[o].dtype() != b[o].dtype()) {
      problem =
          fmt::format("output '{}': {} {} vs {} {}", a[o].name(), dtype_name(a[o].dtype()),
                      shape_str(a[o].shape()), dtype_name(b[o].dtype()), shape_str(b[o].shape()));
      return INFINITY;
    }
    if (a[o].dtype() != DataType::kFloat32) {
      if (std::memcmp(a[o].raw(), b[o].raw(), a[o].nbytes()) != 0) {
        problem = fmt::format("output '{}' differs", a[o].name());
        return INFINITY;
      }
      continue;
    }
    for (int64_t i = 0; i < a[o].numel(); ++i) {
      float x = a[o].data<float>()[i], y = b[o].data<float>()[i];
      if (std::isnan(x) != std::isnan(y)) return INFINITY;
      if (!std::isnan(x)) worst = std::max(worst, static_cast<double>(std::abs(x - y)));
    }
  }
  return worst;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  double rank = p / 100.0 * (v.size() - 1);
  size_t lo = static_cast<size_t>(rank), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - lo);
}

int verify_against_one_device(const std::vector<Tensor>& outputs, Model& reference,
                              const std::vector<Tensor>& inputs) {
  std::vector<Tensor> single = reference.predict(inputs);
  std::string problem;
  double diff = max_abs_difference(outputs, single, problem);
  fmt::print("max abs difference vs one device running the whole batch: {:.3g}\n", diff);
  if (diff <= 1e-5) {
    std::printf("=========== success ===========\n");
    return 0;
  }
  std::printf("=========== failure: gathered outputs differ from one device (%s) ===========\n",
              problem.empty() ? fmt::format("max abs difference {:.3g} > 1e-5", diff).c_str()
                              : problem.c_str());
  return 1;
}

}  // namespace tandem::cli

#include "runtime/convert.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "backends/cpu/prepack.h"
#include "core/error.h"
#include "core/hash.h"
#include "onnx/loader.h"
#include "onnx/safe_file.h"
#include "optimizer/passes.h"
#include "runtime/backend_choice.h"
#include "runtime/build_id.h"
#include "runtime/session.h"

namespace tandem {

namespace {

bool shape_matches(const Shape& declared, bool rank_known, const Shape& actual) {
  if (!rank_known) return true;
  if (declared.size() != actual.size()) return false;
  for (size_t i = 0; i < declared.size(); ++i)
    if (declared[i] >= 0 && declared[i] != actual[i]) return false;
  return true;
}

// --batch N: dim 0 of every input whose dim 0 is symbolic and whose other dims are known.
void add_batch_shapes(const Graph& g, int64_t batch, ShapeMap& shapes) {
  bool any = false;
  for (const Value* v : g.inputs) {
    if (shapes.count(v->name) || !v->shape_known || v->shape.empty() || v->shape[0] >= 0) continue;
    Shape s = v->shape;
    s[0] = batch;
    TANDEM_CHECK(std::all_of(s.begin(), s.end(), [](int64_t d) { return d >= 0; }),
                 ErrorCode::kInvalidArgument,
                 "--batch {}: input '{}' is {}, with symbolic dimensions besides the first; give "
                 "its whole shape with --input-shape",
                 batch, v->name, declared_shape_str(declared_info(v)));
    shapes[v->name] = s;
    any = true;
  }
  TANDEM_CHECK(any, ErrorCode::kInvalidArgument,
               "--batch {}: no input left without --input-shape has a symbolic first dimension",
               batch);
}

// Reads the file in chunks into `h`.
void hash_file(const std::string& path, Hash64& h) {
  RegularFile file(path, fmt::format("model file '{}'", path));
  std::vector<uint8_t> buf(size_t{1} << 20);
  for (int64_t at = 0; at < file.size();) {
    int64_t n = std::min<int64_t>(static_cast<int64_t>(buf.size()), file.size() - at);
    file.read_at(at, n, buf.data());
    h.update(buf.data(), static_cast<size_t>(n));
    at += n;
  }
}

}  // namespace

TensorInfo declared_info(const Value* v) {
  TensorInfo info;
  info.name = v->name;
  info.dtype = v->dtype;
  info.shape = v->shape_known ? v->shape : Shape{};
  info.dim_names = v->dim_names;
  info.dim_names.resize(info.shape.size());
  return info;
}

void optimize_graph(Graph& graph, const std::string& target) {
  run_default_passes(graph);
  // The reference backend runs the model as written: it is the oracle fused graphs are checked
  // against.
  if (target != "ref") {
    run_fusion_passes(graph);
    run_default_passes(graph);
  }
}

void apply_input_shapes(const Graph& graph, std::vector<TensorInfo>& infos,
                        const ShapeMap& shapes) {
  for (const auto& entry : shapes) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
    const std::string& name = entry.first;
    const Shape& shape = entry.second;
    auto it = std::find_if(infos.begin(), infos.end(),
                           [&](const TensorInfo& i) { return i.name == name; });
    if (it == infos.end()) {
      std::vector<std::string> names;
      for (const Value* v : graph.inputs) names.push_back(v->name);
      raise(ErrorCode::kInvalidArgument,
            "input shape given for '{}', but the model has no such input (its inputs: {})", name,
            fmt::join(names, ", "));
    }
    for (int64_t d : shape)
      TANDEM_CHECK(d > 0, ErrorCode::kInvalidArgument,
                   "input shape {} for '{}' has a dimension < 1", shape_str(shape), name);
    const Value* v = graph.inputs[it - infos.begin()];
    TANDEM_CHECK(shape_matches(v->shape, v->shape_known, shape), ErrorCode::kInvalidArgument,
                 "input shape {} for '{}' does not fit the model's declared shape {}",
                 shape_str(shape), name, declared_shape_str(declared_info(v)));
    it->shape = shape;
  }
}

namespace {

// Loads, fixes shapes and optimises: everything before the file is written.
std::unique_ptr<Graph> optimized_for(const std::string& onnx_path, const ConvertOptions& options,
                                     ConvertSummary& summary) {
  TANDEM_CHECK(options.target == "cpu" || options.target == "ref", ErrorCode::kInvalidArgument,
               "unknown target '{}': use 'cpu' (the fast kernels) or 'ref' (the reference "
               "kernels, graph as written)",
               options.target);
  TANDEM_CHECK(!is_tandem_file(onnx_path), ErrorCode::kInvalidArgument,
               "'{}' is a .tandem file already: convert the .onnx it came from", onnx_path);
  std::unique_ptr<Graph> graph = load_onnx_model(onnx_path, options.limits);
  summary.nodes_before = graph->nodes().size();
  summary.uses_external_data = graph->uses_external_data;
  ShapeMap shapes = options.input_shapes;
  if (options.batch > 0) add_batch_shapes(*graph, options.batch, shapes);
  std::vector<TensorInfo> infos;
  for (const Value* v : graph->inputs) infos.push_back(declared_info(v));
  apply_input_shapes(*graph, infos, shapes);  // checked before the optimiser's work
  optimize_graph(*graph, options.target);
  summary.nodes_after = graph->nodes().size();
  for (const auto& v : graph->values())
    if (v->is_constant()) summary.weight_bytes += v->constant->nbytes();
  summary.fixed_shapes = shapes;
  return graph;
}

}  // namespace

// Runs the optimised graph once on zeros, on the CPU backend, and keeps every constant weight the
// kernels packed as a prepacked layout of its Value, for the file to carry. The shapes: the fixed
// ones, else the declared ones with every symbolic dimension 1 (the parallel runner's shards are
// small; a kernel that plans another layout for other shapes packs its own, as without a file).
void prepack_weights(Graph& graph, const ConvertOptions& options, ConvertSummary& summary) {
  std::vector<TensorInfo> infos;
  for (const Value* v : graph.inputs) infos.push_back(declared_info(v));
  apply_input_shapes(graph, infos, summary.fixed_shapes);
  std::vector<TensorType> types;
  std::vector<Tensor> zeros;
  for (const TensorInfo& info : infos) {
    Shape shape = info.shape;
    for (int64_t& d : shape) d = d < 0 ? 1 : d;
    types.push_back({info.dtype, shape});
    zeros.emplace_back(info.dtype, shape);
  }
  std::vector<const Tensor*> inputs;
  for (const Tensor& t : zeros) inputs.push_back(&t);
  std::vector<cpu::RecordedLayout> layouts;
  try {
    cpu::PrepackRecorder recorder(graph);
    Session session(graph, backends_for("cpu"), options.prepack_threads, {});
    RunStats stats;
    session.run(inputs, stats);
    layouts = recorder.take();
  } catch (const Error& e) {
    summary.prepack_skipped = std::string("the prepacking run failed: ") + e.what();
    return;
  }
  for (cpu::RecordedLayout& r : layouts) {
    auto* v = const_cast<Value*>(r.value);
    v->prepacked.push_back({std::move(r.key), r.data, r.bytes, std::move(r.keeper)});
    summary.prepacked_layouts++;
    summary.prepacked_bytes += r.bytes;
  }
}

// The graph, optimised and (target cpu) with its prepacked weights.
std::unique_ptr<Graph> converted_graph(const std::string& onnx_path, const ConvertOptions& options,
                                       ConvertSummary& summary) {
  TANDEM_CHECK(options.weights == "fp32" || options.weights == "fp16", ErrorCode::kInvalidArgument,
               "unknown weight storage '{}': use fp32 or fp16", options.weights);
  std::unique_ptr<Graph> graph = optimized_for(onnx_path, options, summary);
  if (options.weights == "fp16") {
    for (const auto& v : graph->values()) summary.fp16_weights += fp16_candidate(*v);
    // Widened per process at load: a shared prepacked copy would double what the file saves.
    if (options.prepack && options.target == "cpu")
      summary.prepack_skipped = "--weights fp16 stores no prepacked layouts";
  } else if (options.prepack && options.target == "cpu") {
    prepack_weights(*graph, options, summary);
  }
  return graph;
}

ConvertSummary convert_to_tandem(const std::string& onnx_path, const std::string& out_path,
                                 const ConvertOptions& options) {
  ConvertSummary summary;
  std::unique_ptr<Graph> graph = converted_graph(onnx_path, options, summary);
  summary.file_bytes = write_tandem_file(*graph, options.target, summary.fixed_shapes, out_path,
                                         options.weights == "fp16");
  return summary;
}

int convert_to_sealed_memfd(const std::string& onnx_path, const ConvertOptions& options) {
  ConvertSummary summary;
  std::unique_ptr<Graph> graph = converted_graph(onnx_path, options, summary);
  int fd = ::memfd_create("tandem-converted-model", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  TANDEM_CHECK(fd >= 0, ErrorCode::kRuntime, "memfd_create failed: {}", std::strerror(errno));
  try {
    write_tandem_fd(*graph, options.target, summary.fixed_shapes, fd,
                    fmt::format("the converted '{}' (memfd)", onnx_path),
                    options.weights == "fp16");
    TANDEM_CHECK(
        ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == 0,
        ErrorCode::kRuntime, "sealing the converted model failed: {}", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    throw;
  }
  return fd;
}

std::string cache_dir_for(const Context& context) {
  if (!context.cache_dir.empty()) return context.cache_dir;
  const char* env = std::getenv("TANDEM_CACHE_DIR");
  return env ? env : "";
}

TandemModel cached_conversion(const std::string& cache_dir, const std::string& onnx_path,
                              const ShapeMap& input_shapes, const std::string& target,
                              const SizeLimits& limits, bool* hit) {
  if (hit) *hit = false;
  // The key: the model's bytes, then each fixed shape, the target, the format version and the
  // build (another build's optimiser may write another graph), with separators no name can forge
  // (names are length-prefixed).
  Hash64 h;
  hash_file(onnx_path, h);
  std::string tail = fmt::format("|target={}|version={}|build={}|", target, kTandemFormatVersion,
                                 tandem_build_id());
  for (const auto& [name, shape] : input_shapes)
    tail += fmt::format("{}:{}={}|", name.size(), name, shape_str(shape));
  h.update(tail.data(), tail.size());
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(cache_dir, ec);
  TANDEM_CHECK(fs::is_directory(cache_dir), ErrorCode::kInvalidArgument,
               "cache folder '{}' cannot be created: {}", cache_dir, ec.message());
  const std::string entry =
      (fs::path(cache_dir) / fmt::format("{:016x}-{}.tandem", h.digest(), target)).string();

  if (fs::exists(entry, ec)) {
    try {
      TandemModel m = map_tandem_file(entry, target, limits);
      if (hit) *hit = true;
      return m;
    } catch (const Error&) {
      // Truncated, corrupt, from another version: converted again below, replacing it.
    }
  }
  ConvertOptions options;
  options.input_shapes = input_shapes;
  options.target = target;
  options.limits = limits;
  ConvertSummary summary = convert_to_tandem(onnx_path, entry, options);
  TandemModel m = map_tandem_file(entry, target, limits);
  // Its key does not cover the external files' bytes: the mapping stays, the entry goes.
  if (summary.uses_external_data) ::unlink(entry.c_str());
  return m;
}

}  // namespace tandem

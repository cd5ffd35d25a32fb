// tandem::Model: load -> passes -> session, plus the checks that turn a caller's mistakes into
// clear errors before any kernel runs.
#include "tandem/model.h"

#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "onnx/loader.h"
#include "runtime/backend_choice.h"
#include "runtime/convert.h"
#include "runtime/input_check.h"
#include "runtime/session.h"

namespace tandem {

namespace {

int threads_for(const Context& ctx) {
  if (ctx.thread_num > 0) return ctx.thread_num;
  if (!ctx.core_list.empty()) return static_cast<int>(ctx.core_list.size());
  return std::max(1u, std::thread::hardware_concurrency());
}

std::vector<const Backend*> backends_for_context(const Context& ctx) {
  const std::string& d = ctx.device;
  bool cpu = d == "cpu" || (d.rfind("cpu:", 0) == 0 && d.size() > 4 &&
                            d.find_first_not_of("0123456789", 4) == std::string::npos);
  if (d.rfind("cuda", 0) == 0)
    raise(ErrorCode::kUnsupported, "device '{}': CUDA backend not available in this build", d);
  TANDEM_CHECK(cpu, ErrorCode::kInvalidArgument, "unknown device '{}': use 'cpu' or 'cpu:N'", d);
  TANDEM_CHECK(ctx.backend == "auto" || ctx.backend == "cpu" || ctx.backend == "ref",
               ErrorCode::kInvalidArgument, "unknown backend '{}': use 'auto', 'cpu' or 'ref'",
               ctx.backend);
  TANDEM_CHECK(ctx.thread_num >= 0, ErrorCode::kInvalidArgument,
               "thread_num must be >= 0 (0 = one per core), got {}", ctx.thread_num);
  unsigned ncpu = std::max(1u, std::thread::hardware_concurrency());
  for (int c : ctx.core_list)
    TANDEM_CHECK(c >= 0 && static_cast<unsigned>(c) < ncpu, ErrorCode::kInvalidArgument,
                 "core {} in the core list does not exist (this host has cores 0 to {})", c,
                 ncpu - 1);
  return backends_for(ctx.backend);
}

}  // namespace

struct Model::Impl {
  std::unique_ptr<Graph> graph;
  std::unique_ptr<Session> session;
  std::vector<TensorInfo> inputs, outputs;
  std::map<std::string, int> histogram;
  int64_t parameters = 0;
  RunStats stats;

  // The caller's tensors in graph input order, after every check (name, dtype, shape).
  std::vector<const Tensor*> checked_inputs(const std::vector<Tensor>& inputs) const {
    TANDEM_CHECK(session, ErrorCode::kInvalidArgument, "predict() before build_from_file()");
    std::vector<const Tensor*> ordered = match_inputs(this->inputs, inputs);
    for (size_t i = 0; i < ordered.size(); ++i)
      check_input(this->inputs[i], graph->inputs[i]->shape_known, *ordered[i]);
    return ordered;
  }

  // Plans for the inputs' shapes now when they are all fixed.
  void prepare_if_static() {
    std::vector<TensorType> types;
    for (const TensorInfo& in : inputs) {
      for (int64_t d : in.shape)
        if (d < 0) return;
      types.push_back({in.dtype, in.shape});
    }
    session->prepare(types);
  }

  // Everything after loading: passes (unless `converted`: a .tandem graph is optimised already),
  // session, the plan for fixed shapes.
  void finish_build(std::unique_ptr<Graph> loaded, const Context& context,
                    const ShapeMap& input_shapes, const std::vector<const Backend*>& backends,
                    const ShapeMap* converted = nullptr) {
    graph = std::move(loaded);
    for (auto& n : graph->nodes()) histogram[n->op_type]++;
    for (auto& v : graph->values())
      if (v->is_constant()) parameters += v->constant->numel();
    for (const Value* v : graph->inputs) inputs.push_back(declared_info(v));
    for (const Value* v : graph->outputs) outputs.push_back(declared_info(v));
    if (converted) apply_input_shapes(*graph, inputs, *converted);
    fix_shapes(input_shapes);
    if (!converted) optimize_graph(*graph, tandem_target_for_backend(context.backend));
    session = std::make_unique<Session>(*graph, backends, threads_for(context), context.core_list,
                                        context.profile);
    prepare_if_static();
  }

  void fix_shapes(const ShapeMap& shapes) { apply_input_shapes(*graph, inputs, shapes); }
};

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Model Model::build_from_file(const std::string& path, const Context& context,
                             const ShapeMap& input_shapes) {
  std::vector<const Backend*> backends = backends_for_context(context);
  const std::string target = tandem_target_for_backend(context.backend);
  const SizeLimits limits = SizeLimits::from(context);
  Model m;
  // By the magic, not the name: a converted file may be called anything.
  if (is_tandem_file(path)) {
    TandemModel t = map_tandem_file(path, target, limits, context.verify_checksum);
    m.impl_->finish_build(std::move(t.graph), context, input_shapes, backends, &t.fixed_shapes);
  } else if (std::string dir = cache_dir_for(context); !dir.empty()) {
    TandemModel t = cached_conversion(dir, path, input_shapes, target, limits);
    m.impl_->finish_build(std::move(t.graph), context, {}, backends, &t.fixed_shapes);
  } else {
    m.impl_->finish_build(load_onnx_model(path, limits), context, input_shapes, backends);
  }
  return m;
}

Model Model::build_from_buffer(const void* data, size_t size, const Context& context,
                               const ShapeMap& input_shapes) {
  std::vector<const Backend*> backends = backends_for_context(context);
  const SizeLimits limits = SizeLimits::from(context);
  Model m;
  if (has_tandem_magic(data, size)) {
    // The constants will point into the bytes: an aligned copy the model keeps (the caller's
    // buffer may go away and need not be aligned).
    std::shared_ptr<uint8_t> copy(
        static_cast<uint8_t*>(std::aligned_alloc(
            kTandemBlobAlign, (size + kTandemBlobAlign - 1) / kTandemBlobAlign * kTandemBlobAlign)),
        [](uint8_t* p) { std::free(p); });
    if (!copy) throw std::bad_alloc();
    std::memcpy(copy.get(), data, size);
    TandemModel t = read_tandem_bytes(copy.get(), size, copy, "the model given in memory",
                                      tandem_target_for_backend(context.backend), limits);
    m.impl_->finish_build(std::move(t.graph), context, input_shapes, backends, &t.fixed_shapes);
  } else {
    m.impl_->finish_build(load_onnx_model_from_bytes(data, size, limits), context, input_shapes,
                          backends);
  }
  return m;
}

std::vector<TensorInfo> Model::inputs() const {
  return impl_->inputs;
}
std::vector<TensorInfo> Model::outputs() const {
  return impl_->outputs;
}
const RunStats& Model::last_stats() const {
  return impl_->stats;
}
std::map<std::string, int64_t> Model::opset_imports() const {
  return impl_->graph->opset_imports;
}
std::map<std::string, int> Model::op_histogram() const {
  return impl_->histogram;
}
int64_t Model::parameter_count() const {
  return impl_->parameters;
}

void Model::resize(const ShapeMap& input_shapes) {
  TANDEM_CHECK(impl_->session, ErrorCode::kInvalidArgument, "resize() before build_from_file()");
  impl_->fix_shapes(input_shapes);
  impl_->prepare_if_static();
}

std::vector<TensorInfo> Model::output_info_for(const std::vector<Shape>& input_shapes) {
  TANDEM_CHECK(impl_->session, ErrorCode::kInvalidArgument, "output_info_for() before build");
  TANDEM_CHECK(input_shapes.size() == impl_->inputs.size(), ErrorCode::kInvalidArgument,
               "{} input shapes given, the model has {} inputs", input_shapes.size(),
               impl_->inputs.size());
  std::vector<TensorType> types;
  for (size_t i = 0; i < input_shapes.size(); ++i)
    types.push_back({impl_->inputs[i].dtype, input_shapes[i]});
  std::vector<TensorType> out = impl_->session->output_types(types);
  std::vector<TensorInfo> infos = impl_->outputs;
  for (size_t i = 0; i < infos.size(); ++i) {
    infos[i].dtype = out[i].dtype;
    infos[i].shape = out[i].shape;
    infos[i].dim_names.assign(out[i].shape.size(), "");
  }
  return infos;
}

std::vector<Tensor> Model::predict(const std::vector<Tensor>& inputs) {
  std::vector<const Tensor*> ordered = impl_->checked_inputs(inputs);  // first: it checks build
  return impl_->session->run(ordered, impl_->stats);
}

void Model::predict_into(const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) {
  std::vector<const Tensor*> ordered = impl_->checked_inputs(inputs);
  impl_->session->run(ordered, impl_->stats, &outputs);
}

}  // namespace tandem

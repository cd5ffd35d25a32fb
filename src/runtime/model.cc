// tandem::Model: load -> passes -> session, plus the checks that turn a caller's mistakes into
// clear errors before any kernel runs.
#include "tandem/model.h"

#include <thread>

#include "core/error.h"
#include "optimizer/passes.h"
#include "onnx/loader.h"
#include "runtime/input_check.h"
#include "runtime/session.h"
#include "runtime/backend_choice.h"

namespace tandem {

namespace {

std::vector<std::string> input_names(const Graph& g) {
  std::vector<std::string> names;
  for (const Value* v : g.inputs) names.push_back(v->name);
  return names;
}

TensorInfo info_of(const Value* v) {
  TensorInfo info;
  info.name = v->name;
  info.dtype = v->dtype;
  info.shape = v->shape_known ? v->shape : Shape{};
  info.dim_names = v->dim_names;
  info.dim_names.resize(info.shape.size());
  return info;
}

bool shape_matches(const Shape& declared, bool rank_known, const Shape& actual) {
  if (!rank_known) return true;
  if (declared.size() != actual.size()) return false;
  for (size_t i = 0; i < declared.size(); ++i)
    if (declared[i] >= 0 && declared[i] != actual[i]) return false;
  return true;
}

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

  // Everything after loading: passes, session, the plan for fixed shapes.
  void finish_build(std::unique_ptr<Graph> loaded, const Context& context,
                    const ShapeMap& input_shapes, const std::vector<const Backend*>& backends) {
    graph = std::move(loaded);
    for (auto& n : graph->nodes()) histogram[n->op_type]++;
    for (auto& v : graph->values())
      if (v->is_constant()) parameters += v->constant->numel();
    for (const Value* v : graph->inputs) inputs.push_back(info_of(v));
    for (const Value* v : graph->outputs) outputs.push_back(info_of(v));
    fix_shapes(input_shapes);
    run_default_passes(*graph);
    // The reference backend runs the model as written: it is the oracle fused graphs are checked
    // against.
    if (context.backend != "ref") {
      run_fusion_passes(*graph);
      run_default_passes(*graph);
    }
    session = std::make_unique<Session>(*graph, backends, threads_for(context), context.core_list,
                                        context.profile);
    prepare_if_static();
  }

  void fix_shapes(const ShapeMap& shapes) {
    for (const auto& entry : shapes) {
      // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
      const std::string& name = entry.first;
      const Shape& shape = entry.second;
      auto it = std::find_if(inputs.begin(), inputs.end(),
                             [&](const TensorInfo& i) { return i.name == name; });
      TANDEM_CHECK(it != inputs.end(), ErrorCode::kInvalidArgument,
                   "input shape given for '{}', but the model has no such input (its inputs: {})",
                   name, fmt::join(input_names(*graph), ", "));
      for (int64_t d : shape)
        TANDEM_CHECK(d > 0, ErrorCode::kInvalidArgument,
                     "input shape {} for '{}' has a dimension < 1", shape_str(shape), name);
      const Value* v = graph->inputs[it - inputs.begin()];
      TANDEM_CHECK(shape_matches(v->shape, v->shape_known, shape), ErrorCode::kInvalidArgument,
                   "input shape {} for '{}' does not fit the model's declared shape {}",
                   shape_str(shape), name, declared_shape_str(info_of(v)));
      it->shape = shape;
    }
  }
};

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

Model Model::build_from_file(const std::string& path, const Context& context,
                             const ShapeMap& input_shapes) {
  std::vector<const Backend*> backends = backends_for_context(context);
  Model m;
  m.impl_->finish_build(load_onnx_model(path, SizeLimits::from(context)), context, input_shapes,
                        backends);
  return m;
}

Model Model::build_from_buffer(const void* data, size_t size, const Context& context,
                               const ShapeMap& input_shapes) {
  std::vector<const Backend*> backends = backends_for_context(context);
  Model m;
  m.impl_->finish_build(load_onnx_model_from_bytes(data, size, SizeLimits::from(context)), context,
                        input_shapes, backends);
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

#include "runtime/session.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "backends/ref/evaluate.h"
#include "backends/ref/ref_backend.h"
#include "core/checked.h"
#include "core/error.h"
#include "runtime/memory_plan.h"

namespace tandem {

namespace {
constexpr size_t kMaxCachedPlans = 8;

// TANDEM_POISON_OUTPUTS=1 fills the outputs of kernels that promise to write every element with
// 0xFF bytes (NaN for floats) before they run, so a kernel that leaves some unwritten shows up
// in the model checks instead of reading as zeros by luck.
bool poison_outputs() {
  static const bool on = [] {
    const char* v = std::getenv("TANDEM_POISON_OUTPUTS");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}

}  // namespace

Session::Session(Graph& graph, std::vector<const Backend*> backends, int threads,
                 std::vector<int> cores, bool profile)
    : graph_(graph),
      backends_(std::move(backends)),
      pool_(threads, std::move(cores)),
      profile_(profile) {
  for (auto& n : graph_.nodes()) {
    // Without a schema no shape can be inferred, whatever kernels exist: say which is missing.
    TANDEM_CHECK(schemas().find(n->domain, n->op_type), ErrorCode::kUnsupported,
                 "unsupported op type '{}'{} (node '{}'): Tandem has no schema for it", n->op_type,
                 n->domain.empty() ? "" : " in domain '" + n->domain + "'", n->name);
    NodeKernel nk;
    for (const Backend* b : backends_) {
      const KernelFactory* factory = b->kernels().find(n->domain, n->op_type);
      if (factory) nk.kernel = (*factory)(*n);
      if (nk.kernel) {
        nk.zero_outputs = b == &reference_backend();
        break;
      }
    }
    TANDEM_CHECK(nk.kernel, ErrorCode::kUnsupported,
                 "unsupported op type '{}'{} (node '{}'): no backend has a kernel for it",
                 n->op_type, n->domain.empty() ? "" : " in domain '" + n->domain + "'", n->name);
    kernels_[n.get()] = std::move(nk);
  }
}

Session::~Session() = default;

void Session::prepare(const std::vector<TensorType>& input_types) {
  plan_for(input_types);
}

std::vector<TensorType> Session::output_types(const std::vector<TensorType>& input_types) {
  std::shared_ptr<Plan> plan = plan_for(input_types);
  std::vector<TensorType> types;
  for (size_t i = 0; i < plan->output_slots.size(); ++i) {
    const Plan::Slot& slot = plan->slots[plan->output_slots[i]];
    TANDEM_CHECK(slot.static_shape, ErrorCode::kUnsupported,
                 "output '{}' has a shape that depends on input values, known only after running",
                 graph_.outputs[i]->name);
    types.push_back(slot.type);
  }
  return types;
}

std::shared_ptr<Plan> Session::plan_for(const std::vector<TensorType>& input_types) {
  std::vector<Shape> key;
  for (auto& t : input_types) key.push_back(t.shape);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  auto plan = make_plan(input_types);
  if (plans_.size() >= kMaxCachedPlans) plans_.erase(plans_.begin());
  plans_[key] = plan;
  return plan;
}

// The phases are in plan.h, each with its own tests.
std::shared_ptr<Plan> Session::make_plan(const std::vector<TensorType>& input_types) {
  auto plan = std::make_shared<Plan>();
  plan_steps(*plan, graph_, input_types, [&](const Node& node) {
    const NodeKernel& nk = kernels_.at(&node);
    return StepKernel{nk.kernel.get(), nk.zero_outputs};
  });
  plan_lifetimes(*plan, graph_);
  plan_aliases(*plan);
  plan_arena(*plan);
  bind_plan(*plan);
  return plan;
}

std::vector<Tensor> Session::run(const std::vector<const Tensor*>& inputs, RunStats& stats,
                                 const std::vector<Tensor>* into) {
  auto start = std::chrono::steady_clock::now();
  std::vector<TensorType> input_types;
  input_types.reserve(inputs.size());
  for (const Tensor* t : inputs) input_types.push_back({t->dtype(), t->shape()});
  std::shared_ptr<Plan> plan = plan_for(input_types);
  // One run at a time per plan: the arena and the per-run state are shared.
  std::lock_guard<std::mutex> run_lock(mu_);
  Plan& p = *plan;
  pool_.apply_to_calling_thread();

  // With `into`, graph outputs are computed straight into the caller's buffers.
  std::vector<int> into_index;
  if (into) {
    TANDEM_CHECK(into->size() == p.output_slots.size(), ErrorCode::kInvalidArgument,
                 "{} output buffers given, the model has {} outputs", into->size(),
                 p.output_slots.size());
    into_index.assign(p.slots.size(), -1);
    for (size_t i = 0; i < p.output_slots.size(); ++i)
      if (into_index[p.output_slots[i]] < 0) into_index[p.output_slots[i]] = static_cast<int>(i);
  }
  p.cur = p.bound_ptr;  // constants; everything else is set when it is computed
  for (size_t s = 0; s < p.slots.size(); ++s)
    if (p.slots[s].is_input) p.cur[s] = inputs[p.slots[s].input_index];
  // Whatever happens, the run-time tensors do not outlive the run.
  struct ClearOwned {
    Plan& p;
    ~ClearOwned() {
      for (Tensor& t : p.owned)
        if (t.defined()) t = Tensor();
      std::fill(p.extra_bytes.begin(), p.extra_bytes.end(), 0);
    }
  } clear_owned{p};
  size_t live_extra = 0, peak_extra = 0;
  std::map<std::string, double> op_time;
  const bool poison = poison_outputs();

  for (int si = 0; si < static_cast<int>(p.steps.size()); ++si) {
    Plan::Step& step = p.steps[si];
    const Node& node = *step.node;
    if (step.view) {  // the output already is the input's bytes (planned as a view)
      p.cur[step.out[0]] = &p.bound[step.out[0]];
      continue;
    }
    for (size_t i = 0; i < step.in.size(); ++i) {
      int s = step.in[i];
      if (s < 0) {
        step.in_ptrs[i] = nullptr;
        continue;
      }
      TANDEM_CHECK(p.cur[s], ErrorCode::kInternal, "{}: input slot {} was never computed",
                   node.describe(), s);
      step.in_ptrs[i] = p.cur[s];
    }
    std::vector<TensorType> out_types;
    if (step.dynamic) {
      std::vector<TensorType> types;
      std::vector<const TensorType*> type_ptrs;
      types.reserve(step.in_ptrs.size());
      for (const Tensor* t : step.in_ptrs) {
        types.push_back(t ? TensorType{t->dtype(), t->shape()} : TensorType{});
        type_ptrs.push_back(t ? &types.back() : nullptr);
      }
      out_types = infer_node(node, type_ptrs, step.in_ptrs);
      check_output_sizes(node, out_types, graph_.limits.max_tensor_bytes);
    }
    for (size_t i = 0; i < step.out.size(); ++i) {
      int s = step.out[i];
      if (s < 0) {
        step.out_ptrs[i] = nullptr;
        continue;
      }
      const Plan::Slot& slot = p.slots[s];
      const TensorType& type = step.dynamic ? out_types[i] : slot.type;
      Tensor* t;
      if (into && into_index[s] >= 0) {
        const Tensor& dst = (*into)[into_index[s]];
        TANDEM_CHECK(dst.dtype() == type.dtype && dst.shape() == type.shape,
                     ErrorCode::kInvalidArgument, "output '{}' is {} {}, but its buffer is {} {}",
                     graph_.outputs[into_index[s]]->name, dtype_name(type.dtype),
                     shape_str(type.shape), dtype_name(dst.dtype()), shape_str(dst.shape()));
        t = &(p.owned[s] = dst);
      } else if (slot.in_arena) {
        t = &p.bound[s];
      } else {
        t = &(p.owned[s] = Tensor(type.dtype, type.shape));  // zero-filled
        if (poison && !step.zero_outputs) std::memset(t->raw(), 0xFF, t->nbytes());
        p.extra_bytes[s] = t->nbytes();
        live_extra += p.extra_bytes[s];
        step.out_ptrs[i] = t;
        p.cur[s] = t;
        continue;
      }
      if (step.in_place && i == 0) {
        // The bytes hold the input the kernel reads.
      } else if (step.zero_outputs) {
        std::memset(t->raw(), 0, t->nbytes());
      } else if (poison) {
        std::memset(t->raw(), 0xFF, t->nbytes());
      }
      step.out_ptrs[i] = t;
      p.cur[s] = t;
    }
    peak_extra = std::max(peak_extra, live_extra);
    KernelContext ctx{node, pool_};
    auto kernel_start =
        profile_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
    try {
      step.kernel->compute(ctx, step.in_ptrs, step.out_ptrs);
    } catch (const Error& e) {
      std::string msg = e.what();
      if (msg.find(node.name) == std::string::npos) msg = node.describe() + ": " + msg;
      throw Error(e.code(), msg);
    } catch (const std::bad_alloc&) {
      raise(ErrorCode::kRuntime, "{}: out of memory", node.describe());
    }
    if (profile_)
      op_time[node.op_type] +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - kernel_start)
              .count();
    // Release run-time allocations nobody reads any more.
    for (int s : step.release) {
      live_extra -= p.extra_bytes[s];
      p.extra_bytes[s] = 0;
      p.owned[s] = Tensor();
      p.cur[s] = nullptr;
    }
  }

  std::vector<Tensor> outputs;
  outputs.reserve(p.output_slots.size());
  for (size_t i = 0; i < p.output_slots.size(); ++i) {
    int s = p.output_slots[i];
    TANDEM_CHECK(p.cur[s], ErrorCode::kInternal, "output '{}' was never computed",
                 graph_.outputs[i]->name);
    Tensor t = *p.cur[s];
    if (into) {
      // Outputs not written in place (inputs or constants passed through, a slot shared by two
      // outputs) are copied into the caller's buffer.
      const Tensor& dst = (*into)[i];
      if (t.raw() != dst.raw()) {
        TANDEM_CHECK(dst.dtype() == t.dtype() && dst.shape() == t.shape(),
                     ErrorCode::kInvalidArgument, "output '{}' is {} {}, but its buffer is {} {}",
                     graph_.outputs[i]->name, dtype_name(t.dtype()), shape_str(t.shape()),
                     dtype_name(dst.dtype()), shape_str(dst.shape()));
        std::memcpy(const_cast<void*>(dst.raw()), t.raw(), t.nbytes());
      }
      t = dst;
    } else if (!t.owns_data() || p.slots[s].is_input || p.slots[s].constant) {
      // Outputs the caller owns: inputs and constants passed straight through are copied.
      t = t.clone();
    }
    t.set_name(graph_.outputs[i]->name);
    outputs.push_back(std::move(t));
  }
  stats.predict_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  stats.arena_bytes = p.arena_bytes;
  stats.peak_bytes = p.arena_bytes + peak_extra;
  stats.unplanned_bytes = p.unplanned_bytes;
  stats.num_steps = static_cast<int>(p.steps.size());
  stats.op_time_ms = std::move(op_time);
  return outputs;
}

}  // namespace tandem

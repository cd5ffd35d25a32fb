#include "runtime/session.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "core/checked.h"
#include "core/error.h"
#include "backends/ref/evaluate.h"
#include "runtime/memory_plan.h"
#include "backends/ref/ref_backend.h"

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

// Nodes evaluated at plan time when all their inputs are constant. Shape and Size only look at
// their input's shape, so they fold as soon as that shape is known.
bool reads_only_shape(const Node& n) {
  return n.domain.empty() && (n.op_type == "Shape" || n.op_type == "Size");
}
// Ops whose output is their first input's bytes under another shape: when that input lives in
// the arena, the output is planned as a view of it and the step does no work.
bool is_view_op(const Node& n) {
  return n.domain.empty() &&
         (n.op_type == "Reshape" || n.op_type == "Flatten" || n.op_type == "Squeeze" ||
          n.op_type == "Unsqueeze" || n.op_type == "Identity");
}
bool foldable(const Node& n) {
  return n.domain.empty() && n.op_type.rfind("Random", 0) != 0 && n.op_type != "Multinomial";
}
}  // namespace

struct Session::Plan {
  struct Slot {
    TensorType type;
    bool static_shape = false;  // type known at plan time
    bool is_input = false;
    int input_index = -1;
    std::optional<Tensor> constant;
    bool in_arena = false;
    int alias_of = -1;  // a view or an in-place output: shares this slot's arena bytes
    size_t offset = 0;
    int last_use = -1;  // last step reading it (-1: none)
  };
  struct Step {
    const Node* node = nullptr;
    Kernel* kernel = nullptr;
    bool zero_outputs = true;
    std::vector<int> in;       // slot per input, -1 when omitted
    std::vector<int> out;      // slot per output, -1 when omitted
    std::vector<int> release;  // run-time allocated slots last read by this step
    bool dynamic = false;      // infer + allocate at run time
    bool view = false;         // the output is a view of the input in the arena: nothing to run
    bool in_place = false;     // output 0 is written over an input's bytes (not zeroed first)
    // Argument lists handed to the kernel, refilled in place each run (no allocation per step).
    std::vector<const Tensor*> in_ptrs;
    std::vector<Tensor*> out_ptrs;
  };
  std::vector<Slot> slots;
  std::vector<Step> steps;
  std::vector<int> output_slots;      // per graph output
  std::vector<bool> is_graph_output;  // per slot
  size_t arena_bytes = 0;
  size_t unplanned_bytes = 0;
  std::shared_ptr<uint8_t> arena;
  // Made once per plan: constants, and views of the arena for the slots planned there. The
  // arena belongs to the plan, so these views stay valid for every run.
  std::vector<Tensor> bound;
  std::vector<const Tensor*> bound_ptr;  // &bound[s] for constants, else nullptr
  // Per-run state, reused (runs of one plan are serialised by the session's lock).
  std::vector<const Tensor*> cur;  // the tensor each slot holds in this run
  std::vector<Tensor> owned;       // run-time tensors: caller buffers, dynamic, unplanned
  std::vector<size_t> extra_bytes;
};

Session::Session(Graph& graph, std::vector<const Backend*> backends, int threads,
                 std::vector<int> cores, bool profile)
    : graph_(graph),
      backends_(std::move(backends)),
      pool_(threads, std::move(cores)),
      profile_(profile) {
  for (auto& n : graph_.nodes()) {
    const OpSchema* schema = schemas().find(n->domain, n->op_type);
    NodeKernel nk;
    for (const Backend* b : backends_) {
      const KernelFactory* factory = b->kernels().find(n->domain, n->op_type);
      if (factory && schema) nk.kernel = (*factory)(*n);
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

std::shared_ptr<Session::Plan> Session::plan_for(const std::vector<TensorType>& input_types) {
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

std::shared_ptr<Session::Plan> Session::make_plan(const std::vector<TensorType>& input_types) {
  auto plan = std::make_shared<Plan>();
  std::unordered_map<const Value*, int> slot_of;
  auto slot_for = [&](const Value* v) -> int {
    auto it = slot_of.find(v);
    if (it != slot_of.end()) return it->second;
    int idx = static_cast<int>(plan->slots.size());
    plan->slots.emplace_back();
    slot_of[v] = idx;
    if (v->is_constant()) {
      plan->slots[idx].constant = *v->constant;
      plan->slots[idx].type = {v->dtype, v->constant->shape()};
      plan->slots[idx].static_shape = true;
    }
    return idx;
  };
  for (size_t i = 0; i < graph_.inputs.size(); ++i) {
    int s = slot_for(graph_.inputs[i]);
    plan->slots[s].is_input = true;
    plan->slots[s].input_index = static_cast<int>(i);
    plan->slots[s].type = input_types[i];
    plan->slots[s].static_shape = true;
  }

  static uint8_t dummy_byte;
  const size_t max_tensor_bytes = graph_.limits.max_tensor_bytes;
  FoldBudget fold_budget{max_tensor_bytes};
  for (auto& node_ptr : graph_.nodes()) {
    const Node& node = *node_ptr;
    Plan::Step step;
    step.node = &node;
    step.kernel = kernels_.at(&node).kernel.get();
    step.zero_outputs = kernels_.at(&node).zero_outputs;
    // Output slots first: slot_for may grow plan->slots, which would invalidate the pointers
    // into it collected below.
    for (Value* v : node.outputs) step.out.push_back(v ? slot_for(v) : -1);
    for (Value* v : node.inputs)
      if (v) slot_for(v);
    bool inputs_static = true, inputs_constant = true;
    std::vector<const TensorType*> types;
    std::vector<const Tensor*> values;
    std::vector<Tensor> shape_only;  // placeholders for Shape/Size folding
    shape_only.reserve(node.inputs.size());
    for (Value* v : node.inputs) {
      if (!v) {
        step.in.push_back(-1);
        types.push_back(nullptr);
        values.push_back(nullptr);
        continue;
      }
      int s = slot_for(v);
      step.in.push_back(s);
      Plan::Slot& slot = plan->slots[s];
      if (!slot.static_shape) inputs_static = false;
      if (!slot.constant) inputs_constant = false;
      types.push_back(&slot.type);
      values.push_back(slot.constant ? &*slot.constant : nullptr);
    }

    std::vector<TensorType> out_types;
    if (inputs_static) {
      try {
        out_types = infer_node(node, types, values);
      } catch (const ValueNotKnown&) {
        inputs_static = false;
      }
    }
    if (!inputs_static) {
      step.dynamic = true;
      plan->steps.push_back(std::move(step));
      continue;
    }
    check_output_sizes(node, out_types, max_tensor_bytes);
    for (size_t i = 0; i < step.out.size(); ++i) {
      if (step.out[i] < 0) continue;
      plan->slots[step.out[i]].type = out_types[i];
      plan->slots[step.out[i]].static_shape = true;
    }
    // Fold what can be computed now; this is where shape sub-graphs disappear.
    bool fold = foldable(node) && (inputs_constant || reads_only_shape(node));
    if (fold) {
      std::vector<const Tensor*> fold_inputs = values;
      if (reads_only_shape(node) && !inputs_constant) {
        const TensorType& t = *types[0];
        shape_only.push_back(Tensor::borrow(t.dtype, t.shape, &dummy_byte));
        fold_inputs[0] = &shape_only.back();
      }
      // Too large to fold (see FoldBudget): it runs as a step.
      std::optional<std::vector<Tensor>> results =
          fold_on_reference(node, fold_inputs, fold_budget);
      if (results) {
        for (size_t i = 0; i < step.out.size(); ++i)
          if (step.out[i] >= 0) plan->slots[step.out[i]].constant = std::move((*results)[i]);
        continue;  // no step: the values are constants now
      }
    }
    plan->steps.push_back(std::move(step));
  }

  plan->is_graph_output.assign(plan->slots.size(), false);
  for (Value* v : graph_.outputs) {
    int s = slot_for(v);
    plan->output_slots.push_back(s);
    if (s >= static_cast<int>(plan->is_graph_output.size())) plan->is_graph_output.resize(s + 1);
    plan->is_graph_output[s] = true;
  }
  plan->is_graph_output.resize(plan->slots.size(), false);

  // Lifetimes of intermediates written by static steps -> arena offsets.
  std::vector<int> def_step(plan->slots.size(), -1);
  for (int si = 0; si < static_cast<int>(plan->steps.size()); ++si) {
    for (int s : plan->steps[si].in)
      if (s >= 0) plan->slots[s].last_use = si;
    for (int s : plan->steps[si].out)
      if (s >= 0) def_step[s] = si;
  }
  auto arena_candidate = [&](int s) {
    const Plan::Slot& slot = plan->slots[s];
    return def_step[s] >= 0 && !plan->is_graph_output[s] && !slot.constant && slot.static_shape &&
           !plan->steps[def_step[s]].dynamic;
  };
  // Views: a Reshape-like step whose input and output are both arena candidates does no work;
  // its output shares the bytes of its input's root, which lives until the last use of any view.
  // In place: a kernel that can write its output over an input (elementwise ops) does so when
  // nothing reads that input's bytes afterwards. Both are decided in step order, so chains of
  // views and in-place ops share one root.
  std::vector<int> root_last_use(plan->slots.size(), -1);
  for (int s = 0; s < static_cast<int>(plan->slots.size()); ++s)
    root_last_use[s] = std::max(plan->slots[s].last_use, def_step[s]);
  auto root_of = [&](int s) { return plan->slots[s].alias_of >= 0 ? plan->slots[s].alias_of : s; };
  auto share = [&](int b, int root) {
    plan->slots[b].alias_of = root;
    root_last_use[root] = std::max(root_last_use[root], root_last_use[b]);
  };
  auto same_bytes = [&](int a, int b) {
    return plan->slots[a].type.dtype == plan->slots[b].type.dtype &&
           shape_numel(plan->slots[a].type.shape) == shape_numel(plan->slots[b].type.shape);
  };
  for (int si = 0; si < static_cast<int>(plan->steps.size()); ++si) {
    Plan::Step& step = plan->steps[si];
    if (step.dynamic || step.in.empty() || step.out.empty()) continue;
    const int b = step.out[0];
    if (b < 0 || !arena_candidate(b)) continue;
    if (is_view_op(*step.node) && step.out.size() == 1) {
      const int a = step.in[0];
      if (a < 0 || !arena_candidate(a) || !same_bytes(a, b)) continue;
      share(b, root_of(a));
      step.view = true;
      continue;
    }
    std::vector<const TensorType*> in_types;
    for (int s : step.in) in_types.push_back(s >= 0 ? &plan->slots[s].type : nullptr);
    const int i = step.kernel->in_place_input(in_types, plan->slots[b].type);
    if (i < 0 || i >= static_cast<int>(step.in.size())) continue;
    const int a = step.in[i];
    if (a < 0 || !arena_candidate(a) || !same_bytes(a, b)) continue;
    const int root = root_of(a);
    if (root_last_use[root] != si) continue;  // someone reads those bytes later
    bool shared_with_other_input = false;
    for (size_t k = 0; k < step.in.size(); ++k)
      if (static_cast<int>(k) != i && step.in[k] >= 0 && root_of(step.in[k]) == root)
        shared_with_other_input = true;
    if (shared_with_other_input) continue;
    share(b, root);
    step.in_place = true;
  }
  std::vector<BufferRequest> requests;
  std::vector<int> request_slot;
  for (int s = 0; s < static_cast<int>(plan->slots.size()); ++s) {
    Plan::Slot& slot = plan->slots[s];
    if (!arena_candidate(s) || slot.alias_of >= 0) continue;
    size_t bytes = checked_nbytes(slot.type.dtype, slot.type.shape, "planned intermediate");
    requests.push_back({bytes, def_step[s], root_last_use[s]});
    request_slot.push_back(s);
    slot.in_arena = true;
  }
  MemoryPlan mp = plan_memory(requests);
  for (size_t r = 0; r < requests.size(); ++r) plan->slots[request_slot[r]].offset = mp.offsets[r];
  for (Plan::Slot& slot : plan->slots) {
    if (slot.alias_of < 0) continue;
    slot.in_arena = true;
    slot.offset = plan->slots[slot.alias_of].offset;
  }
  plan->arena_bytes = mp.arena_bytes;
  plan->unplanned_bytes = mp.unplanned_bytes;
  void* arena = std::aligned_alloc(64, std::max<size_t>(64, (mp.arena_bytes + 63) / 64 * 64));
  if (!arena) throw std::bad_alloc();
  plan->arena =
      std::shared_ptr<uint8_t>(static_cast<uint8_t*>(arena), [](uint8_t* p) { std::free(p); });

  plan->bound.resize(plan->slots.size());
  plan->bound_ptr.assign(plan->slots.size(), nullptr);
  for (size_t s = 0; s < plan->slots.size(); ++s) {
    const Plan::Slot& slot = plan->slots[s];
    if (slot.constant) {
      plan->bound[s] = *slot.constant;
      plan->bound_ptr[s] = &plan->bound[s];
    } else if (slot.in_arena) {
      plan->bound[s] =
          Tensor::borrow(slot.type.dtype, slot.type.shape, plan->arena.get() + slot.offset);
    }
  }
  for (int si = 0; si < static_cast<int>(plan->steps.size()); ++si) {
    Plan::Step& step = plan->steps[si];
    step.in_ptrs.assign(step.in.size(), nullptr);
    step.out_ptrs.assign(step.out.size(), nullptr);
    for (int s : step.in) {
      if (s < 0 || plan->slots[s].last_use != si || plan->is_graph_output[s]) continue;
      if (plan->slots[s].is_input || plan->slots[s].constant || plan->slots[s].in_arena) continue;
      step.release.push_back(s);
    }
  }
  plan->owned.resize(plan->slots.size());
  plan->extra_bytes.assign(plan->slots.size(), 0);
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

#include "runtime/plan.h"

#include <algorithm>
#include <cstdlib>

#include "backends/ref/evaluate.h"
#include "core/checked.h"
#include "core/error.h"
#include "ops/schema.h"
#include "runtime/memory_plan.h"

namespace tandem {

namespace {

// Nodes evaluated at plan time when all their inputs are constant. Shape and Size only look at
// their input's shape, so they fold as soon as that shape is known.
bool reads_only_shape(const Node& n) {
  return n.domain.empty() && (n.op_type == "Shape" || n.op_type == "Size");
}
bool foldable(const Node& n) {
  return n.domain.empty() && n.op_type.rfind("Random", 0) != 0 && n.op_type != "Multinomial";
}

// The slot of `v`, made on first sight (a constant's value and type come with it).
int slot_for(Plan& plan, const Value* v) {
  auto it = plan.slot_of.find(v);
  if (it != plan.slot_of.end()) return it->second;
  int idx = static_cast<int>(plan.slots.size());
  plan.slots.emplace_back();
  plan.slot_of[v] = idx;
  if (v->is_constant()) {
    plan.slots[idx].constant = *v->constant;
    plan.slots[idx].type = {v->dtype, v->constant->shape()};
    plan.slots[idx].static_shape = true;
  }
  return idx;
}

}  // namespace

void plan_steps(Plan& plan, const Graph& graph, const std::vector<TensorType>& input_types,
                const KernelOf& kernel_of) {
  for (size_t i = 0; i < graph.inputs.size(); ++i) {
    int s = slot_for(plan, graph.inputs[i]);
    plan.slots[s].is_input = true;
    plan.slots[s].input_index = static_cast<int>(i);
    plan.slots[s].type = input_types.at(i);
    plan.slots[s].static_shape = true;
  }
  static uint8_t dummy_byte;
  const size_t max_tensor_bytes = graph.limits.max_tensor_bytes;
  FoldBudget fold_budget{max_tensor_bytes};
  for (auto& node_ptr : graph.nodes()) {
    const Node& node = *node_ptr;
    Plan::Step step;
    step.node = &node;
    StepKernel k = kernel_of(node);
    step.kernel = k.kernel;
    step.zero_outputs = k.zero_outputs;
    // Output slots first: slot_for may grow plan.slots, which would invalidate the pointers
    // into it collected below.
    for (Value* v : node.outputs) step.out.push_back(v ? slot_for(plan, v) : -1);
    for (Value* v : node.inputs)
      if (v) slot_for(plan, v);
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
      int s = slot_for(plan, v);
      step.in.push_back(s);
      Plan::Slot& slot = plan.slots[s];
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
      plan.steps.push_back(std::move(step));
      continue;
    }
    check_output_sizes(node, out_types, max_tensor_bytes);
    for (size_t i = 0; i < step.out.size(); ++i) {
      if (step.out[i] < 0) continue;
      plan.slots[step.out[i]].type = out_types[i];
      plan.slots[step.out[i]].static_shape = true;
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
          if (step.out[i] >= 0) plan.slots[step.out[i]].constant = std::move((*results)[i]);
        continue;  // no step: the values are constants now
      }
    }
    plan.steps.push_back(std::move(step));
  }
}

void plan_lifetimes(Plan& plan, const Graph& graph) {
  for (const Value* v : graph.outputs) {
    int s = slot_for(plan, v);
    plan.output_slots.push_back(s);
    plan.slots[s].is_graph_output = true;
  }
  for (int si = 0; si < static_cast<int>(plan.steps.size()); ++si) {
    for (int s : plan.steps[si].in)
      if (s >= 0) plan.slots[s].last_use = si;
    for (int s : plan.steps[si].out)
      if (s >= 0) plan.slots[s].def_step = si;
  }
  for (Plan::Slot& slot : plan.slots) slot.live_until = std::max(slot.last_use, slot.def_step);
}

namespace {
// Written by a step whose shapes are known now, not a graph output nor a constant: its bytes can
// live in the arena.
bool arena_candidate(const Plan& plan, int s) {
  const Plan::Slot& slot = plan.slots[s];
  return slot.def_step >= 0 && !slot.is_graph_output && !slot.constant && slot.static_shape &&
         !plan.steps[slot.def_step].dynamic;
}
}  // namespace

// Views: a step whose kernel says its output is its input's bytes (Reshape and the like), with
// both slots arena candidates, does no work; its output shares the bytes of its input's root,
// which lives until the last use of any view. In place: a kernel that can write its output over
// an input (elementwise ops) does so when nothing reads that input's bytes afterwards. Both are
// decided in step order, so chains of views and in-place ops share one root.
void plan_aliases(Plan& plan) {
  auto root_of = [&](int s) { return plan.slots[s].alias_of >= 0 ? plan.slots[s].alias_of : s; };
  auto share = [&](int b, int root) {
    plan.slots[b].alias_of = root;
    plan.slots[root].live_until = std::max(plan.slots[root].live_until, plan.slots[b].live_until);
  };
  auto same_bytes = [&](int a, int b) {
    return plan.slots[a].type.dtype == plan.slots[b].type.dtype &&
           shape_numel(plan.slots[a].type.shape) == shape_numel(plan.slots[b].type.shape);
  };
  for (int si = 0; si < static_cast<int>(plan.steps.size()); ++si) {
    Plan::Step& step = plan.steps[si];
    if (step.dynamic || step.in.empty() || step.out.empty()) continue;
    const int b = step.out[0];
    if (b < 0 || !arena_candidate(plan, b)) continue;
    if (step.kernel->output_views_input() && step.out.size() == 1) {
      const int a = step.in[0];
      if (a < 0 || !arena_candidate(plan, a) || !same_bytes(a, b)) continue;
      share(b, root_of(a));
      step.view = true;
      continue;
    }
    std::vector<const TensorType*> in_types;
    for (int s : step.in) in_types.push_back(s >= 0 ? &plan.slots[s].type : nullptr);
    const int i = step.kernel->in_place_input(in_types, plan.slots[b].type);
    if (i < 0 || i >= static_cast<int>(step.in.size())) continue;
    const int a = step.in[i];
    if (a < 0 || !arena_candidate(plan, a) || !same_bytes(a, b)) continue;
    const int root = root_of(a);
    if (plan.slots[root].live_until != si) continue;  // someone reads those bytes later
    bool shared_with_other_input = false;
    for (size_t k = 0; k < step.in.size(); ++k)
      if (static_cast<int>(k) != i && step.in[k] >= 0 && root_of(step.in[k]) == root)
        shared_with_other_input = true;
    if (shared_with_other_input) continue;
    share(b, root);
    step.in_place = true;
  }
}

void plan_arena(Plan& plan) {
  std::vector<BufferRequest> requests;
  std::vector<int> request_slot;
  for (int s = 0; s < static_cast<int>(plan.slots.size()); ++s) {
    Plan::Slot& slot = plan.slots[s];
    if (!arena_candidate(plan, s) || slot.alias_of >= 0) continue;
    size_t bytes = checked_nbytes(slot.type.dtype, slot.type.shape, "planned intermediate");
    requests.push_back({bytes, slot.def_step, slot.live_until});
    request_slot.push_back(s);
    slot.in_arena = true;
  }
  MemoryPlan mp = plan_memory(requests);
  for (size_t r = 0; r < requests.size(); ++r) plan.slots[request_slot[r]].offset = mp.offsets[r];
  for (Plan::Slot& slot : plan.slots) {
    if (slot.alias_of < 0) continue;
    slot.in_arena = true;
    slot.offset = plan.slots[slot.alias_of].offset;
  }
  plan.arena_bytes = mp.arena_bytes;
  plan.unplanned_bytes = mp.unplanned_bytes;
  void* arena = std::aligned_alloc(64, std::max<size_t>(64, (mp.arena_bytes + 63) / 64 * 64));
  if (!arena) throw std::bad_alloc();
  plan.arena =
      std::shared_ptr<uint8_t>(static_cast<uint8_t*>(arena), [](uint8_t* p) { std::free(p); });
}

void bind_plan(Plan& plan) {
  plan.bound.resize(plan.slots.size());
  plan.bound_ptr.assign(plan.slots.size(), nullptr);
  for (size_t s = 0; s < plan.slots.size(); ++s) {
    const Plan::Slot& slot = plan.slots[s];
    if (slot.constant) {
      plan.bound[s] = *slot.constant;
      plan.bound_ptr[s] = &plan.bound[s];
    } else if (slot.in_arena) {
      plan.bound[s] =
          Tensor::borrow(slot.type.dtype, slot.type.shape, plan.arena.get() + slot.offset);
    }
  }
  for (int si = 0; si < static_cast<int>(plan.steps.size()); ++si) {
    Plan::Step& step = plan.steps[si];
    step.in_ptrs.assign(step.in.size(), nullptr);
    step.out_ptrs.assign(step.out.size(), nullptr);
    for (int s : step.in) {
      if (s < 0) continue;
      const Plan::Slot& slot = plan.slots[s];
      if (slot.last_use != si || slot.is_graph_output) continue;
      if (slot.is_input || slot.constant || slot.in_arena) continue;
      step.release.push_back(s);
    }
  }
  plan.owned.resize(plan.slots.size());
  plan.extra_bytes.assign(plan.slots.size(), 0);
}

}  // namespace tandem

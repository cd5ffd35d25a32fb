// A session's plan for one set of input shapes, and the phases that make it. Session::make_plan
// runs them in this order; each reads what the ones before it wrote and is tested on its own
// (tests/unit/plan_test.cc):
//
//  1. plan_steps      a slot per value; concrete types wherever the inputs allow (shape
//                     inference); values computed now where every input is constant (folding,
//                     where the Shape -> Gather -> Concat -> Reshape chains torch exports
//                     disappear); a step per remaining node, dynamic when its shapes depend on
//                     data known only at run time.
//  2. plan_lifetimes  which step writes and last reads each slot; which slots are graph outputs.
//  3. plan_aliases    views (a kernel whose output is its input's bytes, e.g. Reshape, does no
//                     work) and outputs written over an input nobody reads afterwards (in place).
//  4. plan_arena      arena offsets for the intermediates from their lifetimes (memory_plan.h).
//  5. bind_plan       tensors for constants and arena slots, made once; per-step argument lists
//                     and the run-time allocations each step releases.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"
#include "core/limits.h"
#include "ir/ir.h"

namespace tandem {

struct Plan {
  struct Slot {
    TensorType type;
    bool static_shape = false;  // type known at plan time
    bool is_input = false;
    int input_index = -1;
    std::optional<Tensor> constant;
    bool is_graph_output = false;
    int def_step = -1;    // the step that writes it (-1: none: an input, a constant)
    int last_use = -1;    // last step reading it (-1: none)
    int live_until = -1;  // for an arena root: the last step any slot sharing its bytes is used
    bool in_arena = false;
    int alias_of = -1;  // a view or an in-place output: shares this slot's arena bytes
    size_t offset = 0;
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
  std::unordered_map<const Value*, int> slot_of;  // the slot of each value (plan_steps)
  std::vector<Step> steps;
  std::vector<int> output_slots;  // per graph output
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

// The kernel a node runs with, and whether its outputs must be zeroed before it runs.
struct StepKernel {
  Kernel* kernel = nullptr;
  bool zero_outputs = true;
};
using KernelOf = std::function<StepKernel(const Node&)>;

// Phase 1. `input_types` in graph input order. Throws when a planned tensor exceeds the graph's
// max_tensor_bytes; folding keeps to its own budget (FoldBudget).
void plan_steps(Plan& plan, const Graph& graph, const std::vector<TensorType>& input_types,
                const KernelOf& kernel_of);
// Phase 2.
void plan_lifetimes(Plan& plan, const Graph& graph);
// Phase 3.
void plan_aliases(Plan& plan);
// Phase 4: offsets, arena_bytes, unplanned_bytes; allocates the arena.
void plan_arena(Plan& plan);
// Phase 5.
void bind_plan(Plan& plan);

}  // namespace tandem

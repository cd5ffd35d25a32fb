// Session: executes a Graph on one backend. For each distinct set of input shapes it makes a
// plan once (runtime/plan.h: concrete shapes for every value, constants folded, views and
// in-place outputs, arena offsets from value lifetimes) and then runs the plan's steps. Nodes
// whose output shape depends on data only known at run time are inferred and allocated at run
// time instead.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "backends/backend.h"
#include "core/thread_pool.h"
#include "ir/ir.h"
#include "ops/schema.h"
#include "runtime/plan.h"
#include "tandem/model.h"

namespace tandem {

class Session {
 public:
  // Each node runs on the first backend in `backends` that has a kernel for it.
  Session(Graph& graph, std::vector<const Backend*> backends, int threads, std::vector<int> cores,
          bool profile = false);
  ~Session();

  // Builds (or finds) the plan for these input types, in graph input order.
  void prepare(const std::vector<TensorType>& input_types);
  // The outputs' types for these input types, from the plan (no kernel runs). Throws
  // kUnsupported naming the output when its shape depends on data known only at run time.
  std::vector<TensorType> output_types(const std::vector<TensorType>& input_types);
  // Runs with inputs in graph input order (already validated against the model's declaration).
  // With `into` (one tensor per graph output, of the exact dtype and shape), outputs are written
  // into those buffers and returned as views of them.
  std::vector<Tensor> run(const std::vector<const Tensor*>& inputs, RunStats& stats,
                          const std::vector<Tensor>* into = nullptr);

  int threads() const { return pool_.size(); }

 private:
  std::shared_ptr<Plan> plan_for(const std::vector<TensorType>& input_types);
  std::shared_ptr<Plan> make_plan(const std::vector<TensorType>& input_types);

  Graph& graph_;
  std::vector<const Backend*> backends_;
  ThreadPool pool_;
  bool profile_;
  struct NodeKernel {
    std::unique_ptr<Kernel> kernel;
    // Reference kernels may rely on zeroed outputs; faster backends' kernels write every element.
    bool zero_outputs = true;
  };
  std::map<const Node*, NodeKernel> kernels_;
  std::mutex mu_;
  std::map<std::vector<Shape>, std::shared_ptr<Plan>> plans_;
};

}  // namespace tandem

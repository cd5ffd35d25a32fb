// Kernels and backends. A backend maps op types to kernel factories through one explicit table
// (backends/<name>/<name>_kernels.cc); a kernel is created once per node and run many times.
//
// What a backend provides, and what the engine does for it (docs/backends.md says more):
// - Ops: the (domain, op type) pairs of its KernelRegistry. A factory may return nullptr to decline
//   a node (a dtype or attribute it does not take, known from the graph); the session then asks
//   the next backend of the Context's list (runtime/backend_choice.h), the reference backend last,
//   which has a kernel for every schema (Registry.EverySchemaHasAReferenceKernel). A kernel that
//   learns only at run time that it cannot compute a call hands it to the node's reference kernel
//   (backends/cpu/dnnl_kernel.h, FallbackKernel).
// - Attributes: op families with a typed attribute struct (ops/<family>.h) hand their kernels the
//   struct the schema used (KernelRegistry::add with an Attrs parameter, or Attrs::parse in a
//   kernel's constructor); a kernel never re-derives an attribute rule.
// - Memory: every tensor a kernel sees is host memory, laid out row-major (or NHWC for the
//   channels-last ops), owned by the executor: outputs are allocated in the plan's arena
//   (runtime/plan.h) before compute() runs. Kernels allocate only their own scratch and caches.
//   Sharing bytes is declared, never assumed: Kernel::in_place_input and
//   Kernel::output_views_input.
// - Execution and synchronisation: compute() is synchronous; when it returns its outputs are
//   complete and its inputs are no longer read. Intra-op threads come from KernelContext::pool.
//   Kernels of one session run one at a time; kernels of different sessions run concurrently, so
//   state a kernel keeps across calls must be its own (or locked).
// - Copies at graph edges: none today, since every backend computes on host memory. A device
//   backend (CUDA next) brings its own memory, stream and host<->device copies; those are the
//   parts of this interface that backend will add.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "core/thread_pool.h"
#include "ir/ir.h"
#include "ops/schema.h"

namespace tandem {

struct KernelContext {
  const Node& node;
  ThreadPool& pool;  // intra-op threads of this session
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  // inputs[i] is nullptr for an omitted optional input. outputs are already allocated by the
  // executor with the shapes and dtypes the op's schema inferred (nullptr for omitted outputs).
  // Kernels throw tandem::Error (naming ctx.node) on anything they cannot compute.
  virtual void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                       std::span<Tensor* const> outputs) = 0;
  // Which input output 0 may be written over (the executor then plans both in the same bytes
  // when nothing reads that input afterwards), for these types (nullptr: omitted input); -1 for
  // none. Kernels that say yes must compute correctly with outputs[0] aliasing that input, also
  // when they hand a call to a reference kernel. Elementwise kernels are the typical case.
  virtual int in_place_input(std::span<const TensorType* const> inputs,
                             const TensorType& output) const {
    return -1;
  }
  // True when output 0 is always input 0's bytes under another shape (Reshape, Flatten, ...):
  // the planner then makes the output a view of the input and skips the step. compute() must
  // still give that result when it runs (a step whose shapes are known only at run time).
  virtual bool output_views_input() const { return false; }
};

using ComputeFn = void (*)(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                           std::span<Tensor* const> outputs);
using KernelFactory = std::function<std::unique_ptr<Kernel>(const Node& node)>;

// A stateless kernel of an op family with a typed attribute struct (ops/<family>.h).
template <class Attrs>
using AttrComputeFn = void (*)(const KernelContext& ctx, const Attrs& attrs,
                               std::span<const Tensor* const> inputs,
                               std::span<Tensor* const> outputs);

// Holds the attributes `Attrs::parse` read from the node when the kernel was created (so a bad
// attribute fails at plan time, naming the node) and hands them to every call.
template <class Attrs>
class AttrFnKernel : public Kernel {
 public:
  AttrFnKernel(AttrComputeFn<Attrs> fn, const Node& node) : fn_(fn), attrs_(Attrs::parse(node)) {}
  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    fn_(ctx, attrs_, inputs, outputs);
  }

 private:
  AttrComputeFn<Attrs> fn_;
  Attrs attrs_;
};

class KernelRegistry {
 public:
  void add(const std::string& op_type, KernelFactory factory, const std::string& domain = "");
  // Stateless kernels: a plain function.
  void add(const std::string& op_type, ComputeFn fn, const std::string& domain = "");
  // Stateless kernels of a family with typed attributes: parsed once, when the kernel is created.
  template <class Attrs>
  void add(const std::string& op_type, AttrComputeFn<Attrs> fn, const std::string& domain = "") {
    add(op_type, KernelFactory([fn](const Node& node) -> std::unique_ptr<Kernel> {
          return std::make_unique<AttrFnKernel<Attrs>>(fn, node);
        }),
        domain);
  }
  // A stateless kernel whose output 0 is a view of input 0 (Kernel::output_views_input); `fn`
  // copies the bytes for when the step runs after all.
  void add_view(const std::string& op_type, ComputeFn fn, const std::string& domain = "");
  const KernelFactory* find(const std::string& domain, const std::string& op_type) const;
  std::vector<std::string> op_types() const;
  // Every (domain, op type) with a kernel; "" is the default ONNX domain.
  std::vector<std::pair<std::string, std::string>> keys() const;

 private:
  std::map<std::pair<std::string, std::string>, KernelFactory> factories_;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual const KernelRegistry& kernels() const = 0;
};

}  // namespace tandem

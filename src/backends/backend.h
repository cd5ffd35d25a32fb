// Kernels and backends. A backend maps op types to kernel factories through one explicit table
// (backends/<name>/<name>_kernels.cc); a kernel is created once per node and run many times.
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

class KernelRegistry {
 public:
  void add(const std::string& op_type, KernelFactory factory, const std::string& domain = "");
  // Stateless kernels: a plain function.
  void add(const std::string& op_type, ComputeFn fn, const std::string& domain = "");
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

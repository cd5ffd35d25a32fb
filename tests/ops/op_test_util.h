// Runs one op outside any model: builds a one-node graph, infers the outputs with the op's
// schema, allocates them and calls the kernel. For kernel unit tests.
//
//   OpRun r = OpTest("Softmax").attr("axis", 1).opset(13).input(x).run(cpu_backend());
//   std::vector<Tensor> y = OpTest("com.tandem:Gelu").attr("approximate",
//   "tanh").input(x).run_ref();
#pragma once

#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/ir.h"

namespace tandem {
class Backend;
class Kernel;
class ThreadPool;
}  // namespace tandem

namespace tandem::testing {

Attribute attr_int(int64_t v);
Attribute attr_float(float v);
Attribute attr_string(std::string v);
Attribute attr_ints(std::vector<int64_t> v);
Attribute attr_floats(std::vector<float> v);
Attribute attr_strings(std::vector<std::string> v);

// What a run gives back: the outputs (an omitted output is an undefined Tensor) and the name of
// the backend whose kernel computed them.
struct OpRun {
  std::vector<Tensor> outputs;
  std::string backend;
  // When the kernel says output 0 may share bytes with an input (Kernel::in_place_input): that
  // input, and the outputs of one more call with output 0 written over a copy of its bytes.
  int in_place_input = -1;
  std::vector<Tensor> in_place_outputs;
};

class PreparedOp;

// One op, its attributes and inputs, and how to run it. Defaults: opset 17, one output, no
// constant inputs, 2 threads, one compute call.
class OpTest {
 public:
  // "Op" in the default ONNX domain, or "domain:Op" (e.g. "com.tandem:Gelu").
  explicit OpTest(const std::string& op_type);

  OpTest& domain(std::string d);
  OpTest& opset(int v);

  OpTest& attr(const std::string& name, Attribute a);
  OpTest& attr(const std::string& name, int v);
  OpTest& attr(const std::string& name, int64_t v);
  OpTest& attr(const std::string& name, float v);
  OpTest& attr(const std::string& name, double v);  // stored as float, as ONNX does
  OpTest& attr(const std::string& name, const char* v);
  OpTest& attr(const std::string& name, std::string v);
  OpTest& attr(const std::string& name, std::vector<int64_t> v);
  OpTest& attr(const std::string& name, std::vector<float> v);
  OpTest& attr(const std::string& name, std::vector<std::string> v);
  // Braced lists: attr("pads", {1, 1, 1, 1}), attr("scales", {0.5f, 2.0f}), attr("acts", {"Relu"}).
  OpTest& attr(const std::string& name, std::initializer_list<int> v);
  OpTest& attr(const std::string& name, std::initializer_list<float> v);
  OpTest& attr(const std::string& name, std::initializer_list<const char*> v);
  // Adds (or replaces) every attribute of `a`.
  OpTest& attrs(const std::map<std::string, Attribute>& a);

  // The next input. An undefined Tensor (Tensor()) is an omitted optional input.
  OpTest& input(Tensor t);
  OpTest& inputs(std::vector<Tensor> ts);
  // Marks input i as a constant of the model (an initializer), which lets kernels prepack it.
  OpTest& constant(size_t i);
  // constant(i) for every i where mask[i] is true.
  OpTest& constants(const std::vector<bool>& mask);

  OpTest& outputs(int n);
  // Output i is omitted from the node (an unused optional output): the kernel gets nullptr.
  OpTest& omit_output(size_t i);
  OpTest& threads(int n);
  // The kernel's compute is called n times on the same inputs (to exercise per-shape caches);
  // the last outputs are returned.
  OpTest& repeats(int n);

  // Runs the op as a session would: the node's values carry their dtypes and shapes, and when
  // `backend` has no kernel for the op or its factory declines the node, the reference backend
  // runs it (OpRun::backend says which ran). Before each call the outputs are zero-filled for a
  // reference kernel and filled with NaN (0xFF bytes) for any other, as the executor does
  // (TANDEM_POISON_OUTPUTS), so a fast kernel that leaves an element unwritten shows.
  OpRun run(const Backend& backend) const;
  // On the reference backend; its outputs.
  std::vector<Tensor> run_ref() const;
  // The node and the kernel run() would make, kept to be called several times (one kernel
  // instance across calls). Throws when no backend has a kernel for the node.
  PreparedOp prepare(const Backend& backend) const;

  const std::string& op_type() const { return op_; }
  const std::string& domain() const { return domain_; }
  int opset() const { return opset_; }
  int threads() const { return threads_; }
  int repeats() const { return repeats_; }
  const std::map<std::string, Attribute>& attributes() const { return attrs_; }
  const std::vector<Tensor>& inputs() const { return inputs_; }
  // "com.tandem:Gelu" / "Conv": the key a backend's registry files the kernel under.
  std::string key() const;
  // Everything a failure report needs, on one line: op, domain, opset, every attribute as
  // name=value, every input's dtype and shape (and whether it is constant), the outputs.
  std::string describe() const;

 private:
  std::string op_, domain_;
  int opset_ = 17;
  std::map<std::string, Attribute> attrs_;
  std::vector<Tensor> inputs_;
  std::vector<bool> constant_;
  int num_outputs_ = 1;
  std::vector<bool> omitted_;
  int threads_ = 2;
  int repeats_ = 1;
};

// One kernel made from an OpTest's node (OpTest::prepare), with its graph and thread pool.
class PreparedOp {
 public:
  PreparedOp(PreparedOp&&) noexcept;
  ~PreparedOp();
  // Whose kernel it is: the backend asked for, or the reference backend's when that declined.
  const std::string& backend() const { return backend_; }
  // One compute call on `inputs` (shaped as the node's, omitted ones undefined); the outputs are
  // allocated from the shapes the schema infers for these inputs, zeroed for a reference kernel
  // and NaN-filled for any other. Omitted outputs come back undefined.
  std::vector<Tensor> compute(const std::vector<Tensor>& inputs) const;
  // The input the kernel says output 0 may share bytes with for these inputs
  // (Kernel::in_place_input, as the planner asks it), or -1.
  int in_place_input(const std::vector<Tensor>& inputs) const;
  // One compute call as compute() makes it, but with output 0 written over a copy of input
  // `shared`'s bytes, as the planner arranges for an in-place step.
  std::vector<Tensor> compute_in_place(const std::vector<Tensor>& inputs, int shared) const;

 private:
  friend class OpTest;
  PreparedOp();
  std::unique_ptr<Graph> graph_;
  Node* node_ = nullptr;
  std::unique_ptr<Kernel> kernel_;
  std::unique_ptr<ThreadPool> pool_;
  std::string backend_;
};

// "name=value" for an attribute: 2, 0.5, "SAME_UPPER", [1, 1], ["Relu", "Tanh"].
std::string attr_str(const Attribute& a);

// Largest |a - b| over all elements (both converted to double); throws on shape/dtype mismatch.
double max_abs_diff(const Tensor& a, const Tensor& b);

}  // namespace tandem::testing

// A fused op's reference kernel written as the ONNX ops it stands for: a short chain of nodes in
// a private graph, each run on its reference kernel with the shapes its schema infers. A fused
// graph run this way computes exactly what the unfused graph computes, so the reference backend
// stays the oracle for fused ops too.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "ir/ir.h"

namespace tandem {

class OpChain {
 public:
  // `fused`: the node the chain computes (names the steps, for error messages).
  explicit OpChain(const Node& fused);

  // The fused node's input i as a value of the chain.
  Value* input(size_t i);
  // A constant of the chain.
  Value* constant(Tensor t);
  // Appends a node (default ONNX domain) and returns its output. The last node added gives
  // the chain's result.
  Value* add(const std::string& op_type, const std::vector<Value*>& inputs,
             const std::map<std::string, Attribute>& attrs = {}, int opset = 17);

  // Runs the chain on the fused node's inputs and copies the result into `out`, which must have
  // the result's dtype and shape.
  void run(const KernelContext& ctx, std::span<const Tensor* const> inputs, Tensor& out) const;

 private:
  const Node& fused_;
  Graph graph_;
  std::map<size_t, Value*> inputs_;
  std::vector<std::unique_ptr<Kernel>> kernels_;  // one per node of graph_, in order
};

// The OpChains of one composite kernel, built on first use, one per key (a dtype, a dim size: what
// the chain's constants depend on), and kept for the kernel's life. Safe to share between the
// threads that run the kernel.
template <typename Key>
class OpChainCache {
 public:
  // The chain for `key`, made by build(key) the first time.
  template <typename Build>
  const OpChain& get(const Key& key, const Build& build) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = chains_.find(key);
    if (it == chains_.end()) it = chains_.emplace(key, build(key)).first;
    return *it->second;
  }

 private:
  std::mutex mu_;
  std::map<Key, std::unique_ptr<OpChain>> chains_;
};

}  // namespace tandem

// The skeleton of the CPU backend's oneDNN kernels: what each of them did around its own plan
// and execution, written once.
//
// A kernel derives from DnnlKernel<Key, Plan> and supplies:
//   applies(call)       whether the fast path takes these tensors (else the reference kernel);
//   threads(call)       the thread count for this work (threads_for, or the whole pool);
//   key(call, threads)  what a plan depends on (shapes; the thread count where oneDNN fixes it);
//   make_plan(call)     the primitive(s) and buffers for that key, or std::nullopt where the
//                       reference kernel must compute it;
//   run(call, plan)     the execution.
// compute() then does the rest, in this order: the reference fallback for tensors the fast path
// does not take, one call at a time (a session runs one graph at a time, but the lock keeps the
// plans' buffers safe should a kernel ever be shared), the thread count set before a plan is
// made (oneDNN fixes some primitives' team when it creates them), the plan cache, a dnnl::error
// while making a plan taken as "oneDNN has no implementation for this" (the reference kernel
// runs it), and a dnnl::error while running reported as a tandem::Error naming the node and the
// primitive.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "backends/backend.h"
#include "backends/cpu/dnnl_util.h"
#include "core/error.h"

namespace tandem::cpu {

// One compute call: the context and the tensors (absent ones nullptr).
struct Call {
  const KernelContext& ctx;
  std::span<const Tensor* const> inputs;
  std::span<Tensor* const> outputs;

  const Node& node() const { return ctx.node; }
  const Tensor* in(size_t i) const { return i < inputs.size() ? inputs[i] : nullptr; }
  Tensor* out(size_t i) const { return i < outputs.size() ? outputs[i] : nullptr; }
};

// A CPU kernel with the reference backend's kernel for the same node behind it.
class FallbackKernel : public Kernel {
 protected:
  explicit FallbackKernel(const Node& node) : ref_(make_reference_kernel(node)) {}

  // Hands the call to the reference kernel (counted by reference_fallbacks()).
  void fall_back(const Call& call) {
    note_reference_fallback();
    ref_->compute(call.ctx, call.inputs, call.outputs);
  }

 private:
  std::unique_ptr<Kernel> ref_;
};

// Plans by key, made on first use. At most kMaxPlans (16 unless told): a new key beyond that drops
// them all (shapes that keep changing start over instead of growing without bound). The latest plan
// is remembered, so a call with the same key as the one before skips the lookup (std::map nodes
// stay put).
template <class Key, class Plan, size_t kMaxPlans = 16>
class PlanCache {
 public:
  // The latest plan if same(its key) says this call's key is that one, else nullptr: for a
  // caller whose key costs more to build than to compare (Binary's two shapes).
  template <class Same>
  Plan* last_if(Same&& same) {
    return last_ && same(last_key_) ? last_ : nullptr;
  }

  // The plan for `key`, made by make() (returning a Plan) when there is none.
  template <class Make>
  Plan& get(const Key& key, Make&& make) {
    if (last_ && key == last_key_) return *last_;
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      if (plans_.size() >= kMaxPlans) {
        plans_.clear();
        last_ = nullptr;  // (make() may throw before it is set again)
      }
      it = plans_.emplace(key, make()).first;
    }
    last_key_ = key;
    last_ = &it->second;
    return it->second;
  }

 private:
  std::map<Key, Plan> plans_;
  Key last_key_{};
  Plan* last_ = nullptr;
};

template <class Key, class Plan>
class DnnlKernel : public FallbackKernel {
 public:
  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) final {
    const Call call{ctx, inputs, outputs};
    if (!applies(call)) {
      fall_back(call);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    const int n = threads(call);
    set_threads(n);
    std::optional<Plan>& plan = plans_.get(key(call, n), [&] { return try_make_plan(call); });
    if (!plan) {
      fall_back(call);
      return;
    }
    try {
      run(call, *plan);
    } catch (const dnnl::error& e) {
      raise(ErrorCode::kInternal, "{}: oneDNN {} failed: {}", ctx.node.describe(), primitive_,
            e.what());
    }
  }

 protected:
  // primitive: what the kernel runs, as its errors name it ("convolution", "softmax", ...).
  DnnlKernel(const Node& node, const char* primitive)
      : FallbackKernel(node), primitive_(primitive) {}

  virtual bool applies(const Call& call) const = 0;
  virtual int threads(const Call& call) const = 0;
  virtual Key key(const Call& call, int threads) const = 0;
  virtual std::optional<Plan> make_plan(const Call& call) const = 0;
  virtual void run(const Call& call, Plan& plan) = 0;

 private:
  std::optional<Plan> try_make_plan(const Call& call) const {
    try {
      return make_plan(call);
    } catch (const dnnl::error&) {
      return std::nullopt;  // no oneDNN implementation for this geometry
    }
  }

  const char* primitive_;
  std::mutex mu_;
  PlanCache<Key, std::optional<Plan>> plans_;
};

}  // namespace tandem::cpu

#include "backends/backend.h"

namespace tandem {

namespace {
class FnKernel : public Kernel {
 public:
  FnKernel(ComputeFn fn, bool view) : fn_(fn), view_(view) {}
  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    fn_(ctx, inputs, outputs);
  }
  bool output_views_input() const override { return view_; }

 private:
  ComputeFn fn_;
  bool view_;
};
}  // namespace

void KernelRegistry::add(const std::string& op_type, KernelFactory factory,
                         const std::string& domain) {
  factories_[{domain, op_type}] = std::move(factory);
}

void KernelRegistry::add(const std::string& op_type, ComputeFn fn, const std::string& domain) {
  add(
      op_type,
      [fn](const Node&) -> std::unique_ptr<Kernel> {
        return std::make_unique<FnKernel>(fn, false);
      },
      domain);
}

void KernelRegistry::add_view(const std::string& op_type, ComputeFn fn, const std::string& domain) {
  add(
      op_type,
      [fn](const Node&) -> std::unique_ptr<Kernel> { return std::make_unique<FnKernel>(fn, true); },
      domain);
}

const KernelFactory* KernelRegistry::find(const std::string& domain,
                                          const std::string& op_type) const {
  std::string d = domain == "ai.onnx" ? "" : domain;
  auto it = factories_.find({d, op_type});
  return it == factories_.end() ? nullptr : &it->second;
}

std::vector<std::string> KernelRegistry::op_types() const {
  std::vector<std::string> names;
  for (auto& [key, f] : factories_) names.push_back(key.second);
  return names;
}

std::vector<std::pair<std::string, std::string>> KernelRegistry::keys() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [key, f] : factories_) out.push_back(key);
  return out;
}

}  // namespace tandem

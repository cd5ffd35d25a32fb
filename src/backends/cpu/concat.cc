// The CPU backend's Concat, for every dtype of 1, 2, 4 or 8 bytes: with outer the product of the
// dims before the axis and inner the product of those after it, each input contributes one
// contiguous run of (its axis dim x inner) elements per outer index, copied with one memcpy. The
// outer indices are split over the threads when the copy is large enough to pay for them.
// Other dtypes (strings, ...) run on the reference kernel.
#include <cstring>
#include <memory>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "ops/shape_utils.h"
#include "ops/tensor.h"

namespace tandem::cpu {

namespace {

class ConcatKernel : public FallbackKernel {
 public:
  explicit ConcatKernel(const Node& node)
      : FallbackKernel(node), attrs_(ConcatAttrs::parse(node)) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    Tensor* y = outputs.empty() ? nullptr : outputs[0];
    if (!applies(inputs, y)) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    const int64_t rank = static_cast<int64_t>(y->rank());
    const size_t axis = static_cast<size_t>(normalize_axis(attrs_.axis, rank, ctx.node));
    if (!fits(inputs, *y, axis)) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    const int64_t esize = static_cast<int64_t>(dtype_size(y->dtype()));
    int64_t outer = 1, inner = esize;
    for (size_t d = 0; d < axis; ++d) outer *= y->dim(d);
    for (size_t d = axis + 1; d < y->rank(); ++d) inner *= y->dim(d);
    const int64_t out_row = y->dim(axis) * inner;  // bytes per outer index in the output
    if (outer == 0 || out_row == 0) return;
    // Each input's run (bytes) and its offset in an output row.
    std::vector<const char*> src;
    std::vector<int64_t> run, offset;
    int64_t at = 0;
    for (const Tensor* t : inputs) {
      const int64_t r = t->dim(axis) * inner;
      if (r > 0) {
        src.push_back(static_cast<const char*>(t->raw()));
        run.push_back(r);
        offset.push_back(at);
      }
      at += r;
    }
    char* dst = static_cast<char*>(y->raw());
    // Work in elements read and written: 2 per element, about 1 per 4 bytes copied.
    parallel_for_work(
        ctx, outer, static_cast<double>(out_row) / 2, [&](int64_t begin, int64_t end) {
          for (int64_t o = begin; o < end; ++o) {
            char* row = dst + o * out_row;
            for (size_t i = 0; i < src.size(); ++i)
              std::memcpy(row + offset[i], src[i] + o * run[i], static_cast<size_t>(run[i]));
          }
        });
  }

 private:
  // Whether the memcpy path handles these tensors: every input of Y's dtype and rank, a dtype of
  // 1, 2, 4 or 8 bytes (not a string).
  static bool applies(std::span<const Tensor* const> inputs, const Tensor* y) {
    if (!y || inputs.empty() || y->rank() == 0) return false;
    const DataType dt = y->dtype();
    if (dt == DataType::kString) return false;
    const size_t es = dtype_size(dt);
    if (es != 1 && es != 2 && es != 4 && es != 8) return false;
    for (const Tensor* t : inputs)
      if (!t || t->dtype() != dt || t->rank() != y->rank()) return false;
    return true;
  }

  // Whether the inputs' shapes agree with Y's off the axis and add up to Y's on it.
  static bool fits(std::span<const Tensor* const> inputs, const Tensor& y, size_t axis) {
    int64_t sum = 0;
    for (const Tensor* t : inputs) {
      for (size_t d = 0; d < y.rank(); ++d)
        if (d != axis && t->dim(d) != y.dim(d)) return false;
      sum += t->dim(axis);
    }
    return sum == y.dim(axis);
  }

  ConcatAttrs attrs_;
};

}  // namespace

void register_concat_kernels(KernelRegistry& r) {
  r.add("Concat", [](const Node& node) -> std::unique_ptr<Kernel> {
    return std::make_unique<ConcatKernel>(node);
  });
}

}  // namespace tandem::cpu

// The CPU backend's Concat, for every dtype of 1, 2, 4 or 8 bytes: with outer the product of the
// dims before the axis and inner the product of those after it, each input contributes one
// contiguous run of (its axis dim x inner) elements per outer index. The outer indices are split
// over the threads when the copy is large enough to pay for them. Other dtypes (strings, ...) run
// on the reference kernel.
//
// The runs are often short: a channels-last concat (DenseNet's dense blocks, SqueezeNet's Fire
// modules) copies, per pixel, each input's few dozen channels. A memcpy call per run cost more
// than its copy there, so the runs are copied inline in vectors as wide as the CPU has (simd.h),
// one whole output row after another.
#include <cstring>
#include <memory>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "backends/cpu/simd.h"
#include "ops/shape_utils.h"
#include "ops/tensor.h"

// Vector helpers are always inlined into bodies compiled for their width (simd.h): the
// calling-convention note GCC gives for wide vectors does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace tandem::cpu {

namespace {

// Copies `bytes` bytes from src to dst (not overlapping) in vectors of V, then the tail.
template <class V>
TANDEM_SIMD_INLINE void copy_run(char* dst, const char* src, int64_t bytes) {
  constexpr int64_t kVec = static_cast<int64_t>(sizeof(V));
  int64_t i = 0;
  for (; i + 2 * kVec <= bytes; i += 2 * kVec) {
    V a, b;
    std::memcpy(&a, src + i, sizeof a);
    std::memcpy(&b, src + i + kVec, sizeof b);
    std::memcpy(dst + i, &a, sizeof a);
    std::memcpy(dst + i + kVec, &b, sizeof b);
  }
  for (; i + kVec <= bytes; i += kVec) {
    V a;
    std::memcpy(&a, src + i, sizeof a);
    std::memcpy(dst + i, &a, sizeof a);
  }
  for (; i < bytes; ++i) dst[i] = src[i];
}

// Output rows [begin, end): row o is input k's run o for each k in turn.
struct ConcatRows {
  char* dst;
  int64_t out_row;  // bytes per output row
  const char* const* src;
  const int64_t* run;     // bytes per row of each input
  const int64_t* offset;  // where each input's run starts in an output row
  size_t inputs;
};

template <class V>
TANDEM_SIMD_INLINE void concat_rows_body(const ConcatRows* c, int64_t begin, int64_t end) {
  for (int64_t o = begin; o < end; ++o) {
    char* row = c->dst + o * c->out_row;
    for (size_t k = 0; k < c->inputs; ++k)
      copy_run<V>(row + c->offset[k], c->src[k] + o * c->run[k], c->run[k]);
  }
}
TANDEM_SIMD_DISPATCH(concat_rows, (const ConcatRows* c, int64_t begin, int64_t end),
                     (c, begin, end))

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
    const ConcatRows rows{
        static_cast<char*>(y->raw()), out_row, src.data(), run.data(), offset.data(), src.size()};
    // Work in elements read and written: 2 per element, about 1 per 4 bytes copied.
    parallel_for_work(ctx, outer, static_cast<double>(out_row) / 2,
                      [&](int64_t begin, int64_t end) { concat_rows(&rows, begin, end); });
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

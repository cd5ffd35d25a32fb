// The CPU backend's Transpose, any dtype of 1, 2, 4 or 8 bytes: a tiled 2-D transpose over the
// merged axes.
//
// The reference kernel gathers element by element when the last axis moves, striding through
// the input. Here the axes are first simplified (size-1 axes dropped; output axes that are also
// adjacent in the input merged), which leaves a short list of output axes, each with its input
// stride. If the output's last axis is contiguous in the input, rows are copied whole. Otherwise
// the output axis that is contiguous in the input and the output's last axis form a 2-D
// transpose, done in 16 x 16 tiles so that both the reads and the writes stay within a few cache
// lines; the remaining axes are an outer loop.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "core/dtype_visit.h"
#include "core/error.h"
#include "ops/tensor.h"

namespace tandem::cpu {

namespace {

struct TransposePlan {
  std::vector<int64_t> dims;        // merged output axes
  std::vector<int64_t> in_stride;   // their strides in X (elements)
  std::vector<int64_t> out_stride;  // their strides in Y (elements)
  int tile_axis = -1;  // the output axis contiguous in X, when the last output axis is not
  int64_t outer = 1;   // iterations of the outer loop (all axes but the last and tile_axis)
};

TransposePlan make_plan(const Shape& xs, const std::vector<int64_t>& perm) {
  const size_t r = xs.size();
  std::vector<int64_t> x_stride(r, 1);
  for (size_t d = r; d-- > 1;) x_stride[d - 1] = x_stride[d] * xs[d];
  TransposePlan p;
  for (size_t i = 0; i < r; ++i) {
    const int64_t n = xs[perm[i]], st = x_stride[perm[i]];
    if (n == 1) continue;
    if (!p.dims.empty() && p.in_stride.back() == st * n) {
      p.dims.back() *= n;  // adjacent in X as well: one axis
      p.in_stride.back() = st;
    } else {
      p.dims.push_back(n);
      p.in_stride.push_back(st);
    }
  }
  if (p.dims.empty()) {
    p.dims.push_back(1);
    p.in_stride.push_back(1);
  }
  const size_t k = p.dims.size();
  p.out_stride.assign(k, 1);
  for (size_t d = k; d-- > 1;) p.out_stride[d - 1] = p.out_stride[d] * p.dims[d];
  if (p.in_stride[k - 1] != 1) {
    for (size_t d = 0; d + 1 < k; ++d)
      if (p.in_stride[d] == 1) p.tile_axis = static_cast<int>(d);
  }
  for (size_t d = 0; d + 1 < k; ++d)
    if (static_cast<int>(d) != p.tile_axis) p.outer *= p.dims[d];
  return p;
}

constexpr int64_t kTile = 16;

// Outer iterations [begin, end): each one a row copy, a tiled 2-D transpose, or (when no output
// axis is contiguous in X) a strided row gather.
template <typename E>
void transpose_range(const TransposePlan& p, const E* x, E* y, int64_t begin, int64_t end) {
  const int k = static_cast<int>(p.dims.size());
  const int64_t n = p.dims[k - 1], sn = p.in_stride[k - 1];
  std::vector<int64_t> idx(k, 0);
  for (int64_t it = begin; it < end; ++it) {
    // Offsets of outer iteration `it` (the last axis and tile_axis excluded).
    int64_t xo = 0, yo = 0;
    for (int64_t d = k - 2, rem = it; d >= 0; --d) {
      if (d == p.tile_axis) continue;
      const int64_t i = rem % p.dims[d];
      rem /= p.dims[d];
      xo += i * p.in_stride[d];
      yo += i * p.out_stride[d];
    }
    if (sn == 1) {
      std::memcpy(y + yo, x + xo, static_cast<size_t>(n) * sizeof(E));
      continue;
    }
    if (p.tile_axis < 0) {
      for (int64_t c = 0; c < n; ++c) y[yo + c] = x[xo + c * sn];
      continue;
    }
    const int64_t m = p.dims[p.tile_axis], ys = p.out_stride[p.tile_axis];
    for (int64_t a0 = 0; a0 < m; a0 += kTile) {
      const int64_t a1 = std::min(m, a0 + kTile);
      for (int64_t b0 = 0; b0 < n; b0 += kTile) {
        const int64_t b1 = std::min(n, b0 + kTile);
        for (int64_t a = a0; a < a1; ++a) {
          const E* src = x + xo + a;
          E* dst = y + yo + a * ys;
          for (int64_t b = b0; b < b1; ++b) dst[b] = src[b * sn];
        }
      }
    }
  }
}

class TransposeKernel : public FallbackKernel {
 public:
  explicit TransposeKernel(const Node& node)
      : FallbackKernel(node), attrs_(TransposeAttrs::parse(node)) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor* x = inputs.empty() ? nullptr : inputs[0];
    Tensor* y = outputs.empty() ? nullptr : outputs[0];
    const size_t es = x ? dtype_size(x->dtype()) : 0;
    if (!x || !y || x->dtype() == DataType::kString || x->dtype() != y->dtype() ||
        (es != 1 && es != 2 && es != 4 && es != 8) || x->numel() != y->numel()) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    if (y->numel() == 0) return;
    const std::vector<int64_t> perm = attrs_.perm_for(static_cast<int64_t>(x->rank()), ctx.node);
    const TransposePlan& p = plan_for(x->shape(), perm);
    const int64_t per_iter = y->numel() / std::max<int64_t>(1, p.outer);
    auto run = [&](auto tag) {
      using E = decltype(tag);
      const E* xd = static_cast<const E*>(x->raw());
      E* yd = static_cast<E*>(y->raw());
      ctx.pool.parallel_for(
          p.outer, [&](int64_t b, int64_t e) { transpose_range<E>(p, xd, yd, b, e); }, per_iter);
    };
    visit_element_bits(es, run);  // es is 1, 2, 4 or 8 (checked above)
  }

 private:
  const TransposePlan& plan_for(const Shape& xs, const std::vector<int64_t>& perm) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> key = xs;
    key.push_back(-1);
    key.insert(key.end(), perm.begin(), perm.end());
    return plans_.get(key, [&] { return make_plan(xs, perm); });
  }

  std::mutex mu_;
  PlanCache<std::vector<int64_t>, TransposePlan> plans_;
  TransposeAttrs attrs_;
};

std::unique_ptr<Kernel> make_transpose(const Node& node) {
  if (!node.has_input(0)) return nullptr;
  return std::make_unique<TransposeKernel>(node);
}

}  // namespace

void register_transpose_kernels(KernelRegistry& r) {
  r.add("Transpose", make_transpose);
}

}  // namespace tandem::cpu

// The CPU backend's Resize / Upsample for float32: the reference kernel's geometry (ops/resize.h),
// turned once per shape into flat tables, then a tight loop per output row.
//
// The reference kernel walks the product of every axis' taps per output element, in double. Here
// the leading axes (all but the last) are collapsed once into, per output row, a short list of
// (input row offset, weight); the last axis into, per output column, a list of (input column,
// weight). Nearest mode is then a gather (one row, one column tap of weight 1: values are copied
// exactly); linear and cubic sum their taps in float. Outputs that tf_crop_and_resize puts
// outside the input run on the reference kernel.
#include "ops/resize.h"

#include <mutex>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "core/error.h"

namespace tandem::cpu {

namespace {

// Compressed per-position tap lists: entries [ptr[i], ptr[i + 1]) belong to position i.
struct TapTable {
  std::vector<int64_t> ptr{0};
  std::vector<int64_t> index;  // input offset (rows) or column (columns)
  std::vector<float> weight;
  bool one_tap = true;  // every position has exactly one tap
};

struct ResizePlan {
  bool use_reference = false;
  TapTable rows, cols;
  int64_t out_row = 0;  // output elements per row (last axis)
};

ResizePlan make_plan(const ResizeGeometry& g, const Shape& xs, const Shape& ys) {
  ResizePlan p;
  if (g.any_outside || xs.empty()) {
    p.use_reference = true;
    return p;
  }
  const size_t rank = xs.size();
  p.out_row = ys[rank - 1];
  // Columns: the last axis' taps as they are.
  for (const std::vector<ResizeTap>& taps : g.axes[rank - 1].taps) {
    for (const ResizeTap& t : taps) {
      p.cols.index.push_back(t.index);
      p.cols.weight.push_back(static_cast<float>(t.weight));
    }
    p.cols.one_tap = p.cols.one_tap && taps.size() == 1 && taps[0].weight == 1.0;
    p.cols.ptr.push_back(static_cast<int64_t>(p.cols.index.size()));
  }
  // Rows: every output row's leading-axes index, expanded into the product of their taps, as
  // offsets into X (in elements) with the product of the weights.
  std::vector<int64_t> in_stride(rank, 1);
  for (size_t d = rank - 1; d-- > 0;) in_stride[d] = in_stride[d + 1] * xs[d + 1];
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < rank; ++d) rows *= ys[d];
  std::vector<int64_t> idx(rank, 0);
  std::vector<std::pair<int64_t, double>> acc, next;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = static_cast<int64_t>(rank) - 2, rem = r; d >= 0; --d) {
      idx[d] = rem % ys[d];
      rem /= ys[d];
    }
    acc.assign(1, {0, 1.0});
    for (size_t d = 0; d + 1 < rank; ++d) {
      next.clear();
      for (const auto& [off, w] : acc)
        for (const ResizeTap& t : g.axes[d].taps[idx[d]])
          next.push_back({off + t.index * in_stride[d], w * t.weight});
      acc.swap(next);
    }
    for (const auto& [off, w] : acc) {
      p.rows.index.push_back(off);
      p.rows.weight.push_back(static_cast<float>(w));
    }
    p.rows.one_tap = p.rows.one_tap && acc.size() == 1 && acc[0].second == 1.0;
    p.rows.ptr.push_back(static_cast<int64_t>(p.rows.index.size()));
  }
  return p;
}

void resize_rows(const ResizePlan& p, const float* x, float* y, int64_t begin, int64_t end) {
  const int64_t n = p.out_row;
  const int64_t* cptr = p.cols.ptr.data();
  const int64_t* cidx = p.cols.index.data();
  const float* cw = p.cols.weight.data();
  for (int64_t r = begin; r < end; ++r) {
    float* out = y + r * n;
    const int64_t rb = p.rows.ptr[r], re = p.rows.ptr[r + 1];
    if (p.rows.one_tap && p.cols.one_tap) {  // nearest: a gather, values copied exactly
      const float* src = x + p.rows.index[rb];
      for (int64_t c = 0; c < n; ++c) out[c] = src[cidx[c]];
      continue;
    }
    for (int64_t c = 0; c < n; ++c) out[c] = 0.0f;
    for (int64_t t = rb; t < re; ++t) {
      const float* src = x + p.rows.index[t];
      const float rw = p.rows.weight[t];
      for (int64_t c = 0; c < n; ++c) {
        float s = 0.0f;
        for (int64_t k = cptr[c]; k < cptr[c + 1]; ++k) s += cw[k] * src[cidx[k]];
        out[c] += rw * s;
      }
    }
  }
}

class ResizeKernel : public FallbackKernel {
 public:
  explicit ResizeKernel(const Node& node) : FallbackKernel(node) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor* x = inputs.empty() ? nullptr : inputs[0];
    Tensor* y = outputs.empty() ? nullptr : outputs[0];
    if (!x || !y || x->dtype() != DataType::kFloat32 || y->dtype() != DataType::kFloat32 ||
        x->numel() == 0 || y->numel() == 0 || x->rank() == 0 || x->rank() != y->rank()) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    const ResizePlan& p = plan_for(ctx.node, inputs, x->shape(), y->shape());
    if (p.use_reference) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    const float* xd = x->data<float>();
    float* yd = y->data<float>();
    const int64_t rows = static_cast<int64_t>(p.rows.ptr.size()) - 1;
    const int64_t taps = static_cast<int64_t>(p.rows.index.size() / rows) *
                         static_cast<int64_t>(p.cols.index.size() / p.out_row);
    ctx.pool.parallel_for(
        rows, [&](int64_t begin, int64_t end) { resize_rows(p, xd, yd, begin, end); },
        p.out_row * taps);
  }

 private:
  // Plans are keyed by the shapes and the values of roi / scales / sizes (usually constants).
  const ResizePlan& plan_for(const Node& node, std::span<const Tensor* const> inputs,
                             const Shape& xs, const Shape& ys) {
    std::vector<double> key(xs.begin(), xs.end());
    key.push_back(-1);
    key.insert(key.end(), ys.begin(), ys.end());
    for (size_t i = 1; i < inputs.size(); ++i) {
      key.push_back(-2);
      const Tensor* t = inputs[i];
      if (!t) continue;
      for (int64_t k = 0; k < t->numel(); ++k) {
        switch (t->dtype()) {
          case DataType::kFloat32:
            key.push_back(t->data<float>()[k]);
            break;
          case DataType::kFloat64:
            key.push_back(t->data<double>()[k]);
            break;
          case DataType::kInt64:
            key.push_back(static_cast<double>(t->data<int64_t>()[k]));
            break;
          default:
            key.push_back(static_cast<double>(t->dtype()));  // the reference kernel will refuse
        }
      }
    }
    return plans_.get(key, [&] { return make_plan(resize_geometry(node, inputs, ys), xs, ys); });
  }

  std::mutex mu_;
  PlanCache<std::vector<double>, ResizePlan, 8> plans_;
};

std::unique_ptr<Kernel> make_resize(const Node& node) {
  if (!node.has_input(0) || known_not_float32(node.inputs[0])) return nullptr;
  return std::make_unique<ResizeKernel>(node);
}

}  // namespace

void register_resize_kernels(KernelRegistry& r) {
  r.add("Resize", make_resize);
  r.add("Upsample", make_resize);
}

}  // namespace tandem::cpu

// Reference kernels of the matmul family: MatMul and Gemm. Plain loops in i-k-j order (the
// innermost loop walks a row of B and a row of the output contiguously), parallel over rows.
// The fused Attention and FusedMatMul run as the chains of ops they replace (see op_chain.h).
#include "ops/matmul.h"

#include <map>
#include <mutex>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "backends/ref/op_chain.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

// float16 tensors are computed in float32: these convert whole buffers.
std::vector<float> half_to_floats(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  const uint16_t* p = t.data<uint16_t>();
  for (size_t i = 0; i < v.size(); ++i) v[i] = half_to_float(p[i]);
  return v;
}

void floats_to_half(const std::vector<float>& v, Tensor& t) {
  uint16_t* p = t.data<uint16_t>();
  for (size_t i = 0; i < v.size(); ++i) p[i] = float_to_half(v[i]);
}

// Batched [M,K] x [K,N] with broadcast batch dims. a_batch/b_batch: element offset of each
// output batch's A and B matrices.
template <typename T>
void batched_matmul(const KernelContext& ctx, const T* a, const T* b, T* out,
                    const std::vector<int64_t>& a_batch, const std::vector<int64_t>& b_batch,
                    int64_t m, int64_t k, int64_t n) {
  int64_t batches = static_cast<int64_t>(a_batch.size());
  ctx.pool.parallel_for(batches * m, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      int64_t bi = row / m, i = row % m;
      const T* arow = a + a_batch[bi] + i * k;
      const T* bmat = b + b_batch[bi];
      T* orow = out + (bi * m + i) * n;
      for (int64_t j = 0; j < n; ++j) orow[j] = T(0);
      for (int64_t kk = 0; kk < k; ++kk) {
        T av = arow[kk];
        const T* brow = bmat + kk * n;
        for (int64_t j = 0; j < n; ++j) orow[j] += av * brow[j];
      }
    }
  });
}

void matmul_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                   std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& a = *inputs[0];
  const Tensor& b = *inputs[1];
  Tensor& out = *outputs[0];
  Shape sa = a.shape(), sb = b.shape();
  if (sa.size() == 1) sa.insert(sa.begin(), 1);
  if (sb.size() == 1) sb.push_back(1);
  int64_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
  TANDEM_CHECK(sb[sb.size() - 2] == k, ErrorCode::kInvalidArgument,
               "{}: inner dimensions do not match: A is {}, B is {}", node.describe(),
               shape_str(a.shape()), shape_str(b.shape()));
  Shape batch_a(sa.begin(), sa.end() - 2), batch_b(sb.begin(), sb.end() - 2);
  Shape batch = broadcast_shapes(batch_a, batch_b, node);
  int64_t batches = shape_numel(batch);
  TANDEM_CHECK(out.numel() == batches * m * n, ErrorCode::kInternal,
               "{}: output shape {} does not match the operands {} x {}", node.describe(),
               shape_str(out.shape()), shape_str(a.shape()), shape_str(b.shape()));

  // Offset of every output batch's A and B matrix (batch dims broadcast numpy-style).
  std::vector<int64_t> a_strides = broadcast_strides(batch_a, batch);
  std::vector<int64_t> b_strides = broadcast_strides(batch_b, batch);
  std::vector<int64_t> a_batch(static_cast<size_t>(batches)), b_batch(static_cast<size_t>(batches));
  std::vector<int64_t> idx(batch.size(), 0);
  for (int64_t bi = 0; bi < batches; ++bi) {
    int64_t oa = 0, ob = 0;
    for (size_t d = 0; d < batch.size(); ++d) {
      oa += idx[d] * a_strides[d];
      ob += idx[d] * b_strides[d];
    }
    a_batch[bi] = oa * m * k;
    b_batch[bi] = ob * k * n;
    for (size_t d = batch.size(); d-- > 0;) {
      if (++idx[d] < batch[d]) break;
      idx[d] = 0;
    }
  }

  if (a.dtype() == DataType::kFloat16) {
    std::vector<float> fa = half_to_floats(a), fb = half_to_floats(b);
    std::vector<float> fo(static_cast<size_t>(out.numel()));
    batched_matmul<float>(ctx, fa.data(), fb.data(), fo.data(), a_batch, b_batch, m, k, n);
    floats_to_half(fo, out);
    return;
  }
  dispatch_numeric(a.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    batched_matmul<T>(ctx, a.data<T>(), b.data<T>(), out.data<T>(), a_batch, b_batch, m, k, n);
  });
}

// Y = alpha * op(A) * op(B) + beta * C, computed in T.
template <typename T>
void gemm_typed(const KernelContext& ctx, const T* a, const T* b, const Tensor* c, T* y, int64_t m,
                int64_t k, int64_t n, bool ta, bool tb, T alpha, T beta) {
  // C's strides when read as [M, N] (0 along broadcast dims).
  int64_t c_rs = 0, c_cs = 0;
  if (c) {
    std::vector<int64_t> cs = broadcast_strides(c->shape(), {m, n});
    c_rs = cs[0];
    c_cs = cs[1];
  }
  const T* cdata = c ? c->data<T>() : nullptr;
  ctx.pool.parallel_for(m, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(static_cast<size_t>(n));
    for (int64_t i = begin; i < end; ++i) {
      std::fill(acc.begin(), acc.end(), T(0));
      if (tb) {
        // B is [N, K]: a dot product per output element keeps both reads contiguous.
        for (int64_t j = 0; j < n; ++j) {
          T s = T(0);
          for (int64_t kk = 0; kk < k; ++kk)
            s += (ta ? a[kk * m + i] : a[i * k + kk]) * b[j * k + kk];
          acc[j] = s;
        }
      } else {
        for (int64_t kk = 0; kk < k; ++kk) {
          T av = ta ? a[kk * m + i] : a[i * k + kk];
          const T* brow = b + kk * n;
          for (int64_t j = 0; j < n; ++j) acc[j] += av * brow[j];
        }
      }
      for (int64_t j = 0; j < n; ++j) {
        T v = alpha * acc[j];
        if (cdata) v += beta * cdata[i * c_rs + j * c_cs];
        y[i * n + j] = v;
      }
    }
  });
}

void gemm_kernel(const KernelContext& ctx, const GemmAttrs& g,
                 std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  const Tensor& a = *inputs[0];
  const Tensor& b = *inputs[1];
  const Tensor* c = inputs.size() > 2 ? inputs[2] : nullptr;
  Tensor& y = *outputs[0];
  const bool ta = g.trans_a, tb = g.trans_b;
  const float alpha = g.alpha, beta = g.beta;
  // Plain variables, not a structured binding: the lambdas below capture them (clang < 16
  // cannot capture bindings).
  const GemmDims dims = g.dims(a.shape(), b.shape(), node);
  const int64_t m = dims.m, k = dims.k, n = dims.n;
  TANDEM_CHECK(y.numel() == m * n, ErrorCode::kInvalidArgument,
               "{}: shapes do not match: A {}, B {}, Y {}", node.describe(), shape_str(a.shape()),
               shape_str(b.shape()), shape_str(y.shape()));
  if (a.dtype() == DataType::kFloat16) {
    std::vector<float> fa = half_to_floats(a), fb = half_to_floats(b),
                       fy(static_cast<size_t>(m * n));
    Tensor fc;
    if (c) {
      std::vector<float> cv = half_to_floats(*c);
      fc = Tensor::from_vector(DataType::kFloat32, c->shape(), cv);
    }
    gemm_typed<float>(ctx, fa.data(), fb.data(), c ? &fc : nullptr, fy.data(), m, k, n, ta, tb,
                      alpha, beta);
    floats_to_half(fy, y);
    return;
  }
  dispatch_numeric(a.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    gemm_typed<T>(ctx, a.data<T>(), b.data<T>(), c, y.data<T>(), m, k, n, ta, tb,
                  static_cast<T>(alpha), static_cast<T>(beta));
  });
}

// Attention (com.tandem; its definition is in ops/matmul.cc): Transpose / MatMul / Mul / Add /
// Where / Softmax / MatMul / Transpose on their reference kernels. The constants (scale, fill)
// take Q's dtype, so there is one chain per dtype seen.
class AttentionRefKernel : public Kernel {
 public:
  explicit AttentionRefKernel(const Node& node)
      : node_(node), attrs_(AttentionAttrs::parse(node)) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    chains_.get(inputs[0]->dtype(), [&](DataType dt) { return build(dt); })
        .run(ctx, inputs, *outputs[0]);
  }

 private:
  std::unique_ptr<OpChain> build(DataType dt) const {
    auto c = std::make_unique<OpChain>(node_);
    auto scalar = [&](double v) {
      Tensor t(dt, {});
      dispatch_float(dt, node_, [&](auto tag) { t.data<decltype(tag)>()[0] = decltype(tag)(v); });
      return c->constant(std::move(t));
    };
    auto transposed = [&](Value* v, const std::vector<int64_t>& perm) {
      if (perm.empty()) return v;
      Attribute a;
      a.kind = Attribute::Kind::kInts;
      a.ints = perm;
      return c->add("Transpose", {v}, {{"perm", a}});
    };
    Value* q = transposed(c->input(0), attrs_.q_perm);
    Value* k = transposed(c->input(1), attrs_.k_perm);
    Value* v = transposed(c->input(2), attrs_.v_perm);
    Value* s = c->add("MatMul", {q, k});
    if (attrs_.scale != 1.0f) s = c->add("Mul", {s, scalar(attrs_.scale)});
    if (node_.has_input(3)) s = c->add("Add", {s, c->input(3)});
    if (node_.has_input(4)) s = c->add("Where", {c->input(4), s, scalar(attrs_.fill)});
    Attribute axis;
    axis.kind = Attribute::Kind::kInt;
    axis.i = -1;
    Value* p = c->add("Softmax", {s}, {{"axis", axis}}, 13);
    transposed(c->add("MatMul", {p, v}), attrs_.out_perm);
    return c;
  }

  const Node& node_;
  AttentionAttrs attrs_;
  OpChainCache<DataType> chains_;
};

// FusedMatMul (com.tandem): MatMul, then Add bias, then Add residual, on their reference kernels.
class FusedMatMulRefKernel : public Kernel {
 public:
  explicit FusedMatMulRefKernel(const Node& node) : chain_(node) {
    Value* y = chain_.add("MatMul", {chain_.input(0), chain_.input(1)});
    for (size_t i = 2; i < 4; ++i)
      if (node.has_input(i)) y = chain_.add("Add", {y, chain_.input(i)});
  }
  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    chain_.run(ctx, inputs, *outputs[0]);
  }

 private:
  OpChain chain_;
};

}  // namespace

void register_matmul_ref_kernels(KernelRegistry& r) {
  r.add("MatMul", matmul_kernel);
  r.add("Gemm", gemm_kernel);
  r.add(
      "Attention",
      [](const Node& node) -> std::unique_ptr<Kernel> {
        return std::make_unique<AttentionRefKernel>(node);
      },
      kFusedDomain);
  r.add(
      "FusedMatMul",
      [](const Node& node) -> std::unique_ptr<Kernel> {
        return std::make_unique<FusedMatMulRefKernel>(node);
      },
      kFusedDomain);
}

}  // namespace tandem

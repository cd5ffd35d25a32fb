// The CPU backend's MatMul, Gemm and fused FusedMatMul (com.tandem): oneDNN's matmul
// primitive, float32.
//
// MatMul: both operands of rank >= 2, batch dims broadcast numpy-style (the ranks are padded
// with leading 1s, which oneDNN broadcasts). Gemm: op(A) and op(B) are described to oneDNN by
// strides (a transposed operand is a [M, K] view with column-major strides), alpha is the
// primitive's output scale, and beta * C is added by a binary post-op: C itself when beta is 1
// and C is a row [N] / [1, N] or a scalar, else beta * C expanded to [M, N] per call.
//
// FusedMatMul (fuse_matmul_bias.cc): MatMul(A, B) + bias + residual. A bias of N values along the
// last dim is the primitive's bias; a residual of the output's shape is a binary post-op (added
// after the bias, as the two Adds it replaces did). Other shapes go to the reference kernel.
//
// Per (A, B, C) shapes the kernel keeps a prepared primitive; a constant B (a weight of the
// model) is reordered once into the layout the primitive prefers (prepacked). 1-D operands,
// other dtypes and empty tensors run on the reference kernel the node holds.
#include "ops/matmul.h"

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "core/error.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem::cpu {

namespace {

using dnnl::memory;
using Dt = memory::data_type;

// The problem as oneDNN sees it: the plain descriptors of A, B, Y (and C), all the same rank.
struct Problem {
  memory::desc a_md, b_md, y_md;
  float alpha = 1.0f, beta = 1.0f;
  bool has_c = false;
  bool c_expand = false;  // add beta * C expanded to [M, N] rather than C itself
  memory::desc c_md;      // C as the post-op's second source
  int64_t m = 0, n = 0;
  // FusedMatMul: bias as the primitive's bias ([1, ..., 1, N]), residual as a post-op.
  bool has_bias = false, has_residual = false;
  bool unsupported = false;  // a bias or residual the primitive cannot take as it is
  memory::desc bias_md, residual_md;
};

struct MatmulPlan {
  Problem pr;
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
  PackedWeights b;
  std::vector<float> c_buf;  // beta * C expanded, when c_expand
  memory scratch;            // the primitive's scratchpad (user mode)
};

// One plan per (A, B, C or bias, residual) shapes.
class MatmulKernel : public DnnlKernel<std::vector<int64_t>, MatmulPlan> {
 public:
  enum class Kind { kMatMul, kGemm, kFused };

  MatmulKernel(const Node& node, Kind kind)
      : DnnlKernel(node, "matmul"),
        gemm_(kind == Kind::kGemm),
        fused_(kind == Kind::kFused),
        gemm_attrs_(gemm_ ? GemmAttrs::parse(node) : GemmAttrs{}),
        constant_b_(node.has_input(1) && node.inputs[1]->is_constant()),
        b_value_(constant_b_ ? node.inputs[1] : nullptr) {}

 private:
  // Gemm's C, or FusedMatMul's bias and residual.
  const Tensor* c_of(const Call& c) const { return gemm_ ? c.in(2) : nullptr; }
  const Tensor* bias_of(const Call& c) const { return fused_ ? c.in(2) : nullptr; }
  const Tensor* residual_of(const Call& c) const { return fused_ ? c.in(3) : nullptr; }

  bool applies(const Call& c) const override {
    return applies(c.in(0), c.in(1), c_of(c), c.out(0)) &&
           applies_fused(bias_of(c), residual_of(c));
  }

  // Work: M * N * K multiply-adds (y's size times K), 16 to a vector instruction, so a
  // multiply-add counts as 1/8 of an element moved.
  int threads(const Call& c) const override {
    const double k = static_cast<double>(c.in(0)->shape().back());
    return threads_for(c.ctx, static_cast<double>(c.out(0)->numel()) * k / 8);
  }

  std::vector<int64_t> key(const Call& call, int) const override {
    const Tensor* c = gemm_ ? c_of(call) : bias_of(call);
    const Tensor* residual = residual_of(call);
    std::vector<int64_t> key = call.in(0)->shape();
    key.push_back(-1);
    key.insert(key.end(), call.in(1)->shape().begin(), call.in(1)->shape().end());
    key.push_back(-1);
    if (c) key.insert(key.end(), c->shape().begin(), c->shape().end());
    key.push_back(-2);
    if (residual) key.insert(key.end(), residual->shape().begin(), residual->shape().end());
    return key;
  }

  std::optional<MatmulPlan> make_plan(const Call& call) const override {
    const Node& node = call.node();
    const Shape &as = call.in(0)->shape(), &bs = call.in(1)->shape(), &ys = call.out(0)->shape();
    Problem pr;
    if (gemm_) {
      pr = gemm_problem(node, gemm_attrs_, as, bs, c_of(call), ys);
    } else if (fused_) {
      pr = fused_problem(node, as, bs, bias_of(call), residual_of(call), ys);
    } else {
      pr = matmul_problem(node, as, bs, ys);
    }
    if (pr.unsupported) return std::nullopt;
    return make_plan(std::move(pr));
  }

  void run(const Call& call, MatmulPlan& p) override {
    const Tensor *a = call.in(0), *b = call.in(1), *c = c_of(call);
    const Tensor *bias = bias_of(call), *residual = residual_of(call);
    Tensor* y = call.out(0);
    dnnl::stream& s = stream();
    memory a_mem(p.pr.a_md, engine(), const_cast<float*>(a->data<float>()));
    memory y_mem(p.pr.y_md, engine(), y->data<float>());
    p.b.prepare(s, b->data<float>(), constant_b_);
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, p.b.arg()}, {DNNL_ARG_DST, y_mem}};
    if (p.pr.has_c) {
      const float* c_data = c->data<float>();
      if (p.pr.c_expand) {
        expand_c(p, *c);
        c_data = p.c_buf.data();
      }
      args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] =
          memory(p.pr.c_md, engine(), const_cast<float*>(c_data));
    }
    if (p.pr.has_bias)
      args[DNNL_ARG_BIAS] = memory(p.pr.bias_md, engine(), const_cast<float*>(bias->data<float>()));
    if (p.pr.has_residual)
      args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] =
          memory(p.pr.residual_md, engine(), const_cast<float*>(residual->data<float>()));
    add_scratchpad(args, p.scratch);
    p.prim.execute(s, args);
    s.wait();
  }

  // Whether the oneDNN path handles these tensors: float32, rank >= 2, data to compute.
  static bool applies(const Tensor* a, const Tensor* b, const Tensor* c, const Tensor* y) {
    if (!a || !b || !y) return false;
    if (a->dtype() != DataType::kFloat32 || b->dtype() != DataType::kFloat32) return false;
    if (c && c->dtype() != DataType::kFloat32) return false;
    if (a->rank() < 2 || b->rank() < 2 || a->rank() > 8 || b->rank() > 8) return false;
    return a->numel() > 0 && b->numel() > 0 && y->numel() > 0 && (!c || c->numel() > 0);
  }

  static bool applies_fused(const Tensor* bias, const Tensor* residual) {
    for (const Tensor* t : {bias, residual})
      if (t && (t->dtype() != DataType::kFloat32 || t->numel() == 0)) return false;
    return true;
  }

  // beta * C broadcast to [M, N], into p.c_buf.
  static void expand_c(MatmulPlan& p, const Tensor& c) {
    const int64_t m = p.pr.m, n = p.pr.n;
    std::vector<int64_t> cs = broadcast_strides(c.shape(), {m, n});
    const float* cd = c.data<float>();
    p.c_buf.resize(static_cast<size_t>(m * n));
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) p.c_buf[i * n + j] = p.pr.beta * cd[i * cs[0] + j * cs[1]];
  }

  // MatMul(A, B) + bias + residual: the MatMul problem when the output is MatMul's own shape, the
  // bias is N values along the last dim and the residual has the output's shape; else marked
  // unsupported.
  static Problem fused_problem(const Node& node, const Shape& as, const Shape& bs,
                               const Tensor* bias, const Tensor* residual, const Shape& ys) {
    Problem pr;
    if (as.size() < 2 || bs.size() < 2) {
      pr.unsupported = true;
      return pr;
    }
    const size_t rank = std::max(as.size(), bs.size());
    Shape batch =
        broadcast_shapes(Shape(as.begin(), as.end() - 2), Shape(bs.begin(), bs.end() - 2), node);
    Shape mm = batch;
    mm.push_back(as[as.size() - 2]);
    mm.push_back(bs.back());
    if (mm != ys) {
      pr.unsupported = true;
      return pr;
    }
    pr = matmul_problem(node, as, bs, mm);
    const int64_t n = bs.back();
    if (bias) {
      const Shape& s = bias->shape();
      bool row = s.size() <= rank && !s.empty() && s.back() == n && bias->numel() == n;
      if (!row) {
        pr.unsupported = true;
        return pr;
      }
      memory::dims d(pr.y_md.dims().size(), 1);  // the problem's rank (it may fold A's dims)
      d.back() = n;
      pr.has_bias = true;
      pr.bias_md = memory::desc(d, Dt::f32, row_major(d));
    }
    if (residual) {
      if (residual->shape() != ys) {
        pr.unsupported = true;
        return pr;
      }
      pr.has_residual = true;
      pr.residual_md = pr.y_md;
    }
    return pr;
  }

  static Problem matmul_problem(const Node& node, const Shape& as, const Shape& bs,
                                const Shape& ys) {
    const size_t rank = std::max(as.size(), bs.size());
    Shape a = as, b = bs;
    a.insert(a.begin(), rank - a.size(), 1);
    b.insert(b.begin(), rank - b.size(), 1);
    const int64_t m = a[rank - 2], k = a[rank - 1], n = b[rank - 1];
    TANDEM_CHECK(b[rank - 2] == k, ErrorCode::kInvalidArgument,
                 "{}: inner dimensions do not match: A is {}, B is {}", node.describe(),
                 shape_str(as), shape_str(bs));
    Shape batch =
        broadcast_shapes(Shape(a.begin(), a.end() - 2), Shape(b.begin(), b.end() - 2), node);
    Shape y = batch;
    y.push_back(m);
    y.push_back(n);
    TANDEM_CHECK(shape_numel(y) == shape_numel(ys), ErrorCode::kInternal,
                 "{}: output shape {} does not match the operands {} x {}", node.describe(),
                 shape_str(ys), shape_str(as), shape_str(bs));
    // B without batch dims (a weight): A's leading dims and M make one M, so this is one GEMM
    // rather than a batch of small ones. (torch's multi-head attention feeds [seq, batch, dim]
    // to its input projection: with batch 1 that was `seq` matrix-vector products, 10x slower.)
    // A and Y are contiguous, so [.., M, K] read as [rows, K] is the same bytes.
    bool b_batched = false;
    for (size_t i = 0; i + 2 < rank; ++i) b_batched = b_batched || b[i] != 1;
    int64_t rows = m;
    if (!b_batched && rank > 2) {
      rows = shape_numel(a) / k;
      a = {rows, k};
      b = {k, n};
      y = {rows, n};
    }
    Problem pr;
    memory::dims ad = to_dims(a), bd = to_dims(b), yd = to_dims(y);
    pr.a_md = memory::desc(ad, Dt::f32, row_major(ad));
    pr.b_md = memory::desc(bd, Dt::f32, row_major(bd));
    pr.y_md = memory::desc(yd, Dt::f32, row_major(yd));
    pr.m = rows;
    pr.n = n;
    return pr;
  }

  static Problem gemm_problem(const Node& node, const GemmAttrs& g, const Shape& as,
                              const Shape& bs, const Tensor* c, const Shape& ys) {
    const bool ta = g.trans_a, tb = g.trans_b;
    const GemmDims dims = g.dims(as, bs, node);
    const int64_t m = dims.m, k = dims.k, n = dims.n;
    TANDEM_CHECK(ys == Shape({m, n}), ErrorCode::kInvalidArgument,
                 "{}: shapes do not match: A {}, B {}, Y {}", node.describe(), shape_str(as),
                 shape_str(bs), shape_str(ys));
    Problem pr;
    pr.m = m;
    pr.n = n;
    // A transposed operand is the same buffer read with swapped strides.
    pr.a_md = memory::desc({m, k}, Dt::f32, ta ? memory::dims{1, m} : memory::dims{k, 1});
    pr.b_md = memory::desc({k, n}, Dt::f32, tb ? memory::dims{1, k} : memory::dims{n, 1});
    pr.y_md = memory::desc({m, n}, Dt::f32, memory::dims{n, 1});
    pr.alpha = g.alpha;
    pr.beta = g.beta;
    if (c) {
      const Shape& cs = c->shape();
      TANDEM_CHECK(cs.size() <= 2 && broadcast_shapes(cs, {m, n}, node) == Shape({m, n}),
                   ErrorCode::kInvalidArgument, "{}: C of shape {} cannot be broadcast to [{}, {}]",
                   node.describe(), shape_str(cs), m, n);
      pr.has_c = true;
      Shape c2 = cs;  // C as [rows, cols]
      c2.insert(c2.begin(), 2 - c2.size(), 1);
      // A row of N values (or one value) is what oneDNN broadcasts best; anything else, or a
      // beta that must scale C, is expanded per call.
      const bool row = c2[0] == 1;
      pr.c_expand = pr.beta != 1.0f || !row;
      memory::dims cd = pr.c_expand ? memory::dims{m, n} : memory::dims{1, c2[1]};
      pr.c_md = memory::desc(cd, Dt::f32, row_major(cd));
    }
    return pr;
  }

  MatmulPlan make_plan(Problem pr) const {
    MatmulPlan p;
    p.pr = std::move(pr);
    dnnl::primitive_attr attr;
    if (p.pr.alpha != 1.0f) attr.set_output_scales(0, {p.pr.alpha});
    if (p.pr.has_c || p.pr.has_residual) {
      dnnl::post_ops ops;
      ops.append_binary(dnnl::algorithm::binary_add, p.pr.has_c ? p.pr.c_md : p.pr.residual_md);
      attr.set_post_ops(ops);
    }
    // A constant B may take whatever layout the primitive likes best (prepacked once); a B
    // computed at run time is used as it is.
    memory::desc b_want =
        constant_b_ ? memory::desc(p.pr.b_md.dims(), Dt::f32, memory::format_tag::any) : p.pr.b_md;
    dnnl::matmul::desc desc = p.pr.has_bias
                                  ? dnnl::matmul::desc(p.pr.a_md, b_want, p.pr.bias_md, p.pr.y_md)
                                  : dnnl::matmul::desc(p.pr.a_md, b_want, p.pr.y_md);
    p.pd = dnnl::matmul::primitive_desc(desc, user_scratchpad(attr), engine());
    p.prim = dnnl::matmul(p.pd);
    p.scratch = make_scratchpad(p.pd.scratchpad_desc());
    p.b = PackedWeights(p.pr.b_md, p.pd.weights_desc(), b_value_);
    return p;
  }

  bool gemm_;
  bool fused_;
  GemmAttrs gemm_attrs_;  // Gemm only
  bool constant_b_;
  const Value* b_value_;  // B when it is a constant (its prepacked layouts)
};

// Declines (nullptr → the reference backend) what the graph already shows the fast path does
// not handle: another dtype than float32, or a 1-D operand. Unknown types are checked per call.
std::unique_ptr<Kernel> make_matmul_like(const Node& node, MatmulKernel::Kind kind) {
  if (!node.has_input(0) || !node.has_input(1)) return nullptr;
  for (size_t i = 0; i < 2; ++i) {
    const Value* v = node.inputs[i];
    if (known_not_float32(v)) return nullptr;
    if (v->shape_known && v->shape.size() < 2) return nullptr;
  }
  return std::make_unique<MatmulKernel>(node, kind);
}

std::unique_ptr<Kernel> make_matmul(const Node& node) {
  return make_matmul_like(node, MatmulKernel::Kind::kMatMul);
}
std::unique_ptr<Kernel> make_gemm(const Node& node) {
  return make_matmul_like(node, MatmulKernel::Kind::kGemm);
}
std::unique_ptr<Kernel> make_fused_matmul(const Node& node) {
  return make_matmul_like(node, MatmulKernel::Kind::kFused);
}

}  // namespace

void register_matmul_kernels(KernelRegistry& r) {
  r.add("MatMul", make_matmul);
  r.add("Gemm", make_gemm);
  r.add("FusedMatMul", make_fused_matmul, kFusedDomain);
}

}  // namespace tandem::cpu

// The CPU backend's fused Attention (com.tandem; definition in ops/matmul.cc), float32:
// softmax(Q K * scale [+ mask] [where keep]) V computed a block of query rows at a time, so the
// full [Sq, Sk] score matrix is never stored.
//
// Q, K (MatMul's right operand, [.., D, Sk]) and V are read through their perms as strided views,
// so the head-splitting Transposes the fusion absorbed cost nothing, and the result is written
// through out_perm's strides straight into the merged-heads layout. Per (batch, head):
//   - K is packed once as [D, Sk] (rows padded to a multiple of 16 with zeros) and V as
//     [Sk, Dv] (Dv padded likewise);
//   - for each block of query rows (about 64 KiB of scores): scores = (Q rows * scale) x K by
//     outer-product register tiles (8 rows x 3 vectors of keys with AVX-512), then mask / keep,
//     then an exact softmax per row (max, exp, sum: the block holds whole rows, so no online
//     rescaling is needed), then P x V by register tiles (8 rows x 2 vectors of values), divided
//     by the row sums on the way out.
// Work is spread over (batch, head, query block). Shapes it does not cover (ranks other than 2-4
// or different ranks among the operands, a mask that would widen the scores, other dtypes, empty
// tensors) run on the node's reference kernel.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "backends/cpu/simd.h"
#include "ops/matmul.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

// Vector helpers are always inlined into bodies compiled for their width (simd.h): the
// calling-convention note GCC gives for wide vectors does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace tandem::cpu {

namespace {

namespace sv = simd;
// Packed K rows and V rows are padded to a multiple of this many floats (any vector width).
constexpr int64_t kPad = 16;

// An operand as the 4-D logical tensor the op sees after its perm ([b, h, rows, cols]; lower
// ranks get leading size-1 dims), with element strides into the physical tensor.
struct View {
  int64_t dim[4] = {1, 1, 1, 1};
  int64_t stride[4] = {0, 0, 0, 0};
};

// The view of `t` through `perm` (empty: none); false when the rank is not `rank`. An input is
// read through perm: the view's dim i is t's dim perm[i], and a size-1 dim gets stride 0. The
// output is written through it the other way, out = Transpose(O, perm): O's dim perm[j] is t's
// dim j.
bool make_view(const Tensor& t, const std::vector<int64_t>& perm, size_t rank, View& v,
               bool output = false) {
  if (t.rank() != rank || (!perm.empty() && perm.size() != rank)) return false;
  const std::vector<int64_t> st = contiguous_strides(t.shape());
  const size_t lead = 4 - rank;
  for (size_t i = 0; i < rank; ++i) {
    const size_t p = perm.empty() ? i : static_cast<size_t>(perm[i]);
    if (p >= rank) return false;
    const size_t view_dim = output ? p : i, t_dim = output ? i : p;
    v.dim[lead + view_dim] = t.dim(t_dim);
    v.stride[lead + view_dim] = !output && t.dim(t_dim) == 1 ? 0 : st[t_dim];
  }
  return true;
}

// A mask (or keep) broadcast to the scores [B, H, Sq, Sk]: its strides, or false when it has
// more dims than the scores or would widen them.
bool make_broadcast_view(const Tensor& t, const int64_t (&dims)[4], size_t rank, View& v) {
  if (t.rank() > rank) return false;
  const std::vector<int64_t> st = contiguous_strides(t.shape());
  const size_t lead = 4 - t.rank();
  for (size_t i = 0; i < t.rank(); ++i) {
    const int64_t d = t.dim(i);
    if (d != dims[lead + i] && d != 1) return false;
    v.dim[lead + i] = dims[lead + i];
    v.stride[lead + i] = d == 1 ? 0 : st[i];
  }
  for (size_t i = 0; i < lead; ++i) v.dim[i] = dims[i];
  return true;
}

// Sizes of one problem, plus what a block of query rows needs.
struct Problem {
  int64_t batch = 0, heads = 0, sq = 0, sk = 0, d = 0, dv = 0;
  int64_t skp = 0, dvp = 0;  // Sk and Dv rounded up to whole vectors
  int64_t rows = 0;          // query rows per block
  float scale = 1.0f, fill = 0.0f;
  View q, k, v, out, mask, keep;
  const float* qd = nullptr;
  const float* kd = nullptr;
  const float* vd = nullptr;
  const float* maskd = nullptr;
  const bool* keepd = nullptr;
  float* outd = nullptr;
};

// Both products of a block, S = Q K^T and O = P V, are C = A B with A row-major [rows, k] and
// B packed [k, cols] (cols a multiple of the vector width), so one tiled product serves both.

// RG rows of A times NV vectors of B's columns: c[r][j] = sum_k a[r][k] * b[k][j].
template <class V, int RG, int NV>
TANDEM_SIMD_INLINE void product_tile(const float* a, int64_t lda, int64_t k_len, const float* b,
                                     int64_t ldb, float* c, int64_t ldc) {
  constexpr int64_t kW = sv::lanes<V>;
  V acc[RG][NV] = {};
  for (int64_t k = 0; k < k_len; ++k) {
    V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = sv::load<V>(b + k * ldb + v * kW);
#pragma GCC unroll 8
    for (int r = 0; r < RG; ++r) {
      const V as = sv::splat<V>(a[r * lda + k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] += as * bv[v];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < RG; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) sv::store(c + r * ldc + v * kW, acc[r][v]);
}

// C [nr, cols] = A [nr, k_len] B [k_len, cols] (leading dimensions lda, cols, cols): tiles of TR
// rows x TC vectors, then single rows / vectors.
template <class V, int TR, int TC>
TANDEM_SIMD_INLINE void product(const float* a, int64_t lda, int64_t nr, int64_t k_len,
                                const float* b, int64_t cols, float* c) {
  constexpr int64_t kW = sv::lanes<V>;
  int64_t r = 0;
  for (; r + TR <= nr; r += TR) {
    int64_t j = 0;
    for (; j + TC * kW <= cols; j += TC * kW)
      product_tile<V, TR, TC>(a + r * lda, lda, k_len, b + j, cols, c + r * cols + j, cols);
    for (; j < cols; j += kW)
      product_tile<V, TR, 1>(a + r * lda, lda, k_len, b + j, cols, c + r * cols + j, cols);
  }
  for (; r < nr; ++r) {
    int64_t j = 0;
    for (; j + TC * kW <= cols; j += TC * kW)
      product_tile<V, 1, TC>(a + r * lda, lda, k_len, b + j, cols, c + r * cols + j, cols);
    for (; j < cols; j += kW)
      product_tile<V, 1, 1>(a + r * lda, lda, k_len, b + j, cols, c + r * cols + j, cols);
  }
}

// One block of `nr` query rows starting at row i0 of head (b, h). kt: packed K [D, skp], vp:
// packed V [Sk, dvp]; qbuf [rows, D], sbuf [rows, skp], obuf [rows, dvp] scratch.
// Tiles keep their accumulators in registers: 8 x 3 and 8 x 2 vectors with AVX-512's 32
// registers, 4 x 3 and 4 x 2 with 16 (chosen by timing).
template <class V>
TANDEM_SIMD_INLINE void attention_block_body(const Problem& pr, int64_t b, int64_t h, int64_t i0,
                                             int64_t nr, const float* kt, const float* vp,
                                             float* qbuf, float* sbuf, float* obuf) {
  constexpr int64_t kW = sv::lanes<V>;
  constexpr bool kWide = kW == 16;
  const int64_t d_len = pr.d, sk = pr.sk, skp = pr.skp, dvp = pr.dvp;
  // Q rows, scaled.
  const float* qbase = pr.qd + b * pr.q.stride[0] + h * pr.q.stride[1];
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t d = 0; d < d_len; ++d)
      qbuf[r * d_len + d] = qbase[(i0 + r) * pr.q.stride[2] + d * pr.q.stride[3]] * pr.scale;
  // Scores.
  product<V, kWide ? 8 : 4, 3>(qbuf, d_len, nr, d_len, kt, skp, sbuf);
  // Mask, keep, softmax (unnormalized; the sums divide the output).
  float inv_sum[64];
  for (int64_t r = 0; r < nr; ++r) {
    float* s = sbuf + r * skp;
    const int64_t i = i0 + r;
    if (pr.maskd) {
      const float* m =
          pr.maskd + b * pr.mask.stride[0] + h * pr.mask.stride[1] + i * pr.mask.stride[2];
      const int64_t ms = pr.mask.stride[3];
      if (ms == 1) {
        int64_t j = 0;
        for (; j + kW <= sk; j += kW) sv::store(s + j, sv::load<V>(s + j) + sv::load<V>(m + j));
        for (; j < sk; ++j) s[j] += m[j];
      } else {
        for (int64_t j = 0; j < sk; ++j) s[j] += m[j * ms];
      }
    }
    if (pr.keepd) {
      const bool* kp =
          pr.keepd + b * pr.keep.stride[0] + h * pr.keep.stride[1] + i * pr.keep.stride[2];
      const int64_t ks = pr.keep.stride[3];
      for (int64_t j = 0; j < sk; ++j)
        if (!kp[j * ks]) s[j] = pr.fill;
    }
    const float neg_inf = -__builtin_inff();
    V vmax = sv::splat<V>(neg_inf);
    int64_t j = 0;
    for (; j + kW <= sk; j += kW) vmax = sv::max(vmax, sv::load<V>(s + j));
    if (j < sk) vmax = sv::max(vmax, sv::load_partial<V>(s + j, sk - j, neg_inf));
    const V mx = sv::splat<V>(sv::reduce_max(vmax));
    V vsum{};
    for (j = 0; j + kW <= sk; j += kW) {
      const V e = sv::exp<V, true>(sv::load<V>(s + j) - mx);
      vsum += e;
      sv::store(s + j, e);
    }
    if (j < sk) {
      const V e = sv::exp<V, true>(sv::load_partial<V>(s + j, sk - j) - mx);
      const V e_tail = sv::load_partial<V>((const float*)&e, sk - j);  // zero past Sk
      vsum += e_tail;
      sv::store(s + j, e_tail);
    }
    inv_sum[r] = 1.0f / sv::reduce_add(vsum);
  }
  // P x V.
  product<V, kWide ? 8 : 4, 2>(sbuf, skp, nr, sk, vp, dvp, obuf);
  // Out, through its strides.
  float* obase = pr.outd + b * pr.out.stride[0] + h * pr.out.stride[1];
  for (int64_t r = 0; r < nr; ++r) {
    float* o = obase + (i0 + r) * pr.out.stride[2];
    const float* src = obuf + r * dvp;
    const float f = inv_sum[r];
    if (pr.out.stride[3] == 1) {
      int64_t c = 0;
      for (; c + kW <= pr.dv; c += kW) sv::store(o + c, sv::load<V>(src + c) * f);
      for (; c < pr.dv; ++c) o[c] = src[c] * f;
    } else {
      for (int64_t c = 0; c < pr.dv; ++c) o[c * pr.out.stride[3]] = src[c] * f;
    }
  }
}

TANDEM_SIMD_DISPATCH(attention_block,
                     (const Problem& pr, int64_t b, int64_t h, int64_t i0, int64_t nr,
                      const float* kt, const float* vp, float* qbuf, float* sbuf, float* obuf),
                     (pr, b, h, i0, nr, kt, vp, qbuf, sbuf, obuf))

class AttentionKernel : public FallbackKernel {
 public:
  explicit AttentionKernel(const Node& node)
      : FallbackKernel(node), attrs_(AttentionAttrs::parse(node)) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    Problem pr;
    std::lock_guard<std::mutex> lock(mu_);  // packed_ is per kernel
    if (!plan(inputs, outputs, pr)) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    run(ctx, pr);
  }

 private:
  bool plan(std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs,
            Problem& pr) const {
    const Tensor* q = inputs[0];
    const Tensor* k = inputs[1];
    const Tensor* v = inputs[2];
    const Tensor* mask = inputs.size() > 3 ? inputs[3] : nullptr;
    const Tensor* keep = inputs.size() > 4 ? inputs[4] : nullptr;
    Tensor* y = outputs[0];
    for (const Tensor* t : {q, k, v, mask, static_cast<const Tensor*>(y)})
      if (t && (t->dtype() != DataType::kFloat32 || t->numel() == 0)) return false;
    if (keep && (keep->dtype() != DataType::kBool || keep->numel() == 0)) return false;
    const size_t rank = q->rank();
    if (rank < 2 || rank > 4) return false;
    if (!make_view(*q, attrs_.q_perm, rank, pr.q) || !make_view(*k, attrs_.k_perm, rank, pr.k) ||
        !make_view(*v, attrs_.v_perm, rank, pr.v) ||
        !make_view(*y, attrs_.out_perm, rank, pr.out, /*output=*/true))
      return false;
    // Batch dims: equal, or 1 (broadcast) in an operand.
    int64_t bdims[2];
    for (int i = 0; i < 2; ++i) {
      bdims[i] = std::max({pr.q.dim[i], pr.k.dim[i], pr.v.dim[i]});
      for (const View* w : {&pr.q, &pr.k, &pr.v})
        if (w->dim[i] != bdims[i] && w->dim[i] != 1) return false;
      if (pr.out.dim[i] != bdims[i]) return false;
    }
    pr.batch = bdims[0];
    pr.heads = bdims[1];
    pr.sq = pr.q.dim[2];
    pr.d = pr.q.dim[3];
    pr.sk = pr.k.dim[3];
    pr.dv = pr.v.dim[3];
    if (pr.k.dim[2] != pr.d || pr.v.dim[2] != pr.sk || pr.out.dim[2] != pr.sq ||
        pr.out.dim[3] != pr.dv)
      return false;
    const int64_t sdims[4] = {pr.batch, pr.heads, pr.sq, pr.sk};
    if (mask && !make_broadcast_view(*mask, sdims, rank, pr.mask)) return false;
    if (keep && !make_broadcast_view(*keep, sdims, rank, pr.keep)) return false;
    pr.skp = (pr.sk + kPad - 1) / kPad * kPad;
    pr.dvp = (pr.dv + kPad - 1) / kPad * kPad;
    // Blocks of whole score rows of about 64 KiB, 8 to 64 rows (measured best on Zen 5).
    pr.rows = std::clamp<int64_t>(16384 / pr.skp / 8 * 8, 8, 64);
    pr.scale = attrs_.scale;
    pr.fill = attrs_.fill;
    pr.qd = q->data<float>();
    pr.kd = k->data<float>();
    pr.vd = v->data<float>();
    pr.maskd = mask ? mask->data<float>() : nullptr;
    pr.keepd = keep ? keep->data<bool>() : nullptr;
    pr.outd = y->data<float>();
    return true;
  }

  void run(const KernelContext& ctx, const Problem& pr) {
    const int64_t heads = pr.batch * pr.heads;
    const int64_t kt_size = pr.d * pr.skp, vp_size = pr.sk * pr.dvp;
    packed_.resize(static_cast<size_t>(heads * (kt_size + vp_size)));
    float* packed = packed_.data();
    // Pack K as [D, skp] and V as [Sk, dvp] per head, zero padded.
    parallel_for_work(ctx, heads, 2.0 * (kt_size + vp_size), [&](int64_t begin, int64_t end) {
      for (int64_t bh = begin; bh < end; ++bh) {
        const int64_t b = bh / pr.heads, h = bh % pr.heads;
        float* kt = packed + bh * (kt_size + vp_size);
        float* vp = kt + kt_size;
        const float* kb = pr.kd + b * pr.k.stride[0] + h * pr.k.stride[1];
        for (int64_t d = 0; d < pr.d; ++d) {
          float* row = kt + d * pr.skp;
          for (int64_t j = 0; j < pr.sk; ++j) row[j] = kb[d * pr.k.stride[2] + j * pr.k.stride[3]];
          std::fill(row + pr.sk, row + pr.skp, 0.0f);
        }
        const float* vb = pr.vd + b * pr.v.stride[0] + h * pr.v.stride[1];
        for (int64_t j = 0; j < pr.sk; ++j) {
          float* row = vp + j * pr.dvp;
          for (int64_t c = 0; c < pr.dv; ++c) row[c] = vb[j * pr.v.stride[2] + c * pr.v.stride[3]];
          std::fill(row + pr.dv, row + pr.dvp, 0.0f);
        }
      }
    });
    const int64_t blocks = (pr.sq + pr.rows - 1) / pr.rows;
    const double block_work = double(pr.rows) * double(pr.skp) * double(pr.d + pr.dv + 16);
    parallel_for_work(ctx, heads * blocks, block_work, [&](int64_t begin, int64_t end) {
      // Per-thread scratch, kept between calls (no allocation or zero-fill per call).
      thread_local std::vector<float> scratch;
      const size_t need = static_cast<size_t>(pr.rows * (pr.d + pr.skp + pr.dvp));
      if (scratch.size() < need) scratch.resize(need);
      float* qbuf = scratch.data();
      float* sbuf = qbuf + pr.rows * pr.d;
      float* obuf = sbuf + pr.rows * pr.skp;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t bh = t / blocks, blk = t % blocks;
        const int64_t i0 = blk * pr.rows, nr = std::min(pr.rows, pr.sq - i0);
        const float* kt = packed + bh * (kt_size + vp_size);
        attention_block(pr, bh / pr.heads, bh % pr.heads, i0, nr, kt, kt + kt_size, qbuf, sbuf,
                        obuf);
      }
    });
  }

  AttentionAttrs attrs_;
  std::mutex mu_;
  std::vector<float> packed_;  // packed K and V of every head, reused across calls
};

std::unique_ptr<Kernel> make_attention(const Node& node) {
  if (!node.has_input(0) || known_not_float32(node.inputs[0])) return nullptr;
  return std::make_unique<AttentionKernel>(node);
}

}  // namespace

void register_attention_kernels(KernelRegistry& r) {
  r.add("Attention", make_attention, kFusedDomain);
}

}  // namespace tandem::cpu

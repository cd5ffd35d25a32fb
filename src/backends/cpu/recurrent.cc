// The CPU backend's RNN, GRU and LSTM: float32, vector loops written once over simd.h's vector
// type and compiled for AVX-512, AVX2 + FMA and SSE2 (the widest the CPU has, within simd.h's
// cap).
//
// Per call: (1) the input projection X W^T + biases of every time step and direction at once,
// one small GEMM over the prepacked W of all directions; (2) per direction the steps, each one
// small GEMM h R^T over the prepacked R (a GEMV at batch 1) followed by the gate
// nonlinearities, fused per vector of units (simd.h's sigmoid, on its polynomial exp, and its
// rational tanh).
//
// Packed layouts: each gate's H units are padded to Hp (a multiple of the vector width: 4, 8 or
// 16 floats), so every gate starts on a vector boundary; a direction's N = gates * Hp columns. W is
// packed to [input, dirs * N], R to [dirs][H, N] (both transposed, zeros in the padding, in
// column panels: see the GEMM below), the input-side biases to [dirs * N] (Wb + Rb, except GRU's
// h gate, whose Rb stays apart since it sits inside the reset gate product), LSTM's peepholes to
// [dirs][3][Hp]. Padded lanes compute values no real lane reads (the GEMMs read only the first H
// entries of a state row). W, R, B and P that are constants of the model (initializers) are
// packed once, the rest on every call. The layout depends on the vector width, so a kernel
// reads simd::level() once per call, repacks when it changed, and runs every loop at that level.
//
// Threads: the projection's panels, and the (direction, batch chunk) tasks of the steps, run in
// parallel only when the work is large enough to pay for the wake-up; at the sizes of small
// models everything runs on the calling thread.
//
// Everything the ONNX operators define is supported: directions, layout 0/1, optional B,
// sequence_lens (rows finish at their own length), initial_h/initial_c, peepholes, clip,
// input_forget, linear_before_reset, every activation (sigmoid, tanh and relu vectorized, the
// others through the shared scalar formulas of ops/recurrent.h). Other dtypes go to the
// reference kernel (declined by the factory, or delegated per call).
#include "ops/recurrent.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "backends/cpu/simd.h"
#include "core/error.h"
#include "ops/shape_utils.h"

// Vector helpers are always inlined into bodies compiled for their width (simd.h): the
// calling-convention note GCC gives for wide vectors does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace tandem::cpu {

namespace {

enum class Cell { kRnn, kGru, kLstm };
enum class ActKind { kSigmoid, kTanh, kRelu, kScalar };

// One activation as the vector loops apply it.
struct Act {
  ActKind kind = ActKind::kScalar;
  const RecurrentActivation* scalar = nullptr;  // the formula, for kScalar
};

int64_t round_up(int64_t v, int64_t m) {
  return (v + m - 1) / m * m;
}

// std::vector storage on 64-byte boundaries: the packed weights and the state rows start on a
// cache line, so no vector load straddles two.
template <class T>
struct Aligned64 {
  using value_type = T;
  Aligned64() = default;
  template <class U>
  Aligned64(const Aligned64<U>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64}));
  }
  void deallocate(T* p, size_t) { ::operator delete (p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const Aligned64<U>&) const {
    return true;
  }
};
using Floats = std::vector<float, Aligned64<float>>;

// Whether t's shape is exactly `dims`.
bool dims_are(const Tensor* t, std::initializer_list<int64_t> dims) {
  return t->rank() == dims.size() && std::equal(dims.begin(), dims.end(), t->shape().begin());
}

// ---- Vector math ---------------------------------------------------------------------------
//
// Everything below is written once over the vector type V of simd.h (4, 8 or 16 floats) and
// always inlined into the functions TANDEM_SIMD_DISPATCH_AT compiles for each instruction set.

using simd::load;
using simd::splat;
using simd::store;

// a[0..lanes) + b[0..lanes)
template <class V>
TANDEM_SIMD_INLINE V add(const float* a, const float* b) {
  return load<V>(a) + load<V>(b);
}

template <class V>
TANDEM_SIMD_INLINE V apply(const Act& a, V x) {
  switch (a.kind) {
    case ActKind::kSigmoid:
      return simd::sigmoid(x);
    case ActKind::kTanh:
      return simd::tanh_rational(x);
    case ActKind::kRelu:
      return x < 0.0f ? splat<V>(0.0f) : x;  // NaN stays NaN, as in the reference
    case ActKind::kScalar:
      break;
  }
  float v[simd::lanes<V>];
  store(v, x);
  for (float& e : v) e = static_cast<float>((*a.scalar)(e));
  return load<V>(v);
}

// ---- Small GEMM: C[m, :N] = init + A[m, :K] B for m < M --------------------------------------
//
// Vectors of `lanes` floats (16 with AVX-512: twice the multiply-adds per instruction of AVX2's
// 8). B is packed in column panels: [K, N] (N a multiple of lanes) cut into panels of at most 128
// columns, the vectors spread evenly over them, each panel stored as its K rows one after the
// other (row stride: the panel's width), panel after panel. A tile thus reads B sequentially, and
// a panel stays in cache while the row blocks of A go by. init is one row of N (nullptr: zeros).

// `n` items spread evenly over `parts`: part p's first item and count (the first n % parts
// parts get one more).
struct Spread {
  int64_t base, extra;
  Spread(int64_t n, int64_t parts) : base(n / parts), extra(n % parts) {}
  int64_t first(int64_t p) const { return p * base + std::min(p, extra); }
  int64_t count(int64_t p) const { return base + (p < extra ? 1 : 0); }
};

// The panels of N columns: how many, and panel p's first column and width.
constexpr int64_t kMaxPanel = 128;
struct Panels {
  int64_t lanes, count;
  Spread vecs;
  Panels(int64_t N, int64_t lanes_)
      : lanes(lanes_),
        count((N / lanes + kMaxPanel / lanes - 1) / (kMaxPanel / lanes)),
        vecs(N / lanes, std::max<int64_t>(1, count)) {}
  int64_t col(int64_t p) const { return lanes * vecs.first(p); }
  int64_t width(int64_t p) const { return lanes * vecs.count(p); }
};

// dense [K, N] row-major -> panels.
Floats to_panels(const std::vector<float>& dense, int64_t K, int64_t N, int64_t lanes) {
  Floats out(dense.size());
  const Panels panels(N, lanes);
  for (int64_t p = 0; p < panels.count; ++p) {
    const int64_t col = panels.col(p), width = panels.width(p);
    for (int64_t k = 0; k < K; ++k)
      std::copy_n(dense.data() + k * N + col, width, out.data() + col * K + k * width);
  }
  return out;
}

// MR rows by NV vectors of C, accumulated in registers over the K rows of one panel of B.
template <class V, int MR, int NV>
TANDEM_SIMD_INLINE void tile(int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                             const float* init, float* c, int64_t ldc) {
  constexpr int64_t L = simd::lanes<V>;
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const V i0 = init ? load<V>(init + L * v) : splat<V>(0.0f);
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m) acc[m][v] = i0;
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* bk = b + k * ldb;
    V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = load<V>(bk + L * v);
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m) {
      const V av = splat<V>(a[m * lda + k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[m][v] = av * bv[v] + acc[m][v];
    }
  }
#pragma GCC unroll 4
  for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) store(c + m * ldc + L * v, acc[m][v]);
  }
}

// MR rows of one panel: its `width / lanes` vectors in tiles of up to kMaxNv (as many
// accumulators as the registers hold), spread evenly.
template <class V, int MR>
TANDEM_SIMD_INLINE void panel_rows(int64_t width, int64_t K, const float* a, int64_t lda,
                                   const float* b, const float* init, float* c, int64_t ldc) {
  constexpr int64_t L = simd::lanes<V>;
  constexpr int kMaxNv = simd::registers<V> >= 32 ? (MR <= 2 ? 8 : 4)  // 32 zmm registers
                         : MR == 1                ? 8
                         : MR == 2                ? 4
                                                  : 2;  // 16 registers
  const int64_t vecs = width / L;
  const int64_t tiles = (vecs + kMaxNv - 1) / kMaxNv;
  const Spread spread(vecs, tiles);
  int64_t col = 0;
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t nv = spread.count(t);
    const float* in = init ? init + col : nullptr;
    const float* bt = b + col;
    float* ct = c + col;
    switch (nv) {
#define TANDEM_TILE(NV)                                                             \
  case NV:                                                                          \
    if constexpr (NV <= kMaxNv) tile<V, MR, NV>(K, a, lda, bt, width, in, ct, ldc); \
    break;
      TANDEM_TILE(1)
      TANDEM_TILE(2)
      TANDEM_TILE(3)
      TANDEM_TILE(4)
      TANDEM_TILE(5)
      TANDEM_TILE(6)
      TANDEM_TILE(7)
      TANDEM_TILE(8)
#undef TANDEM_TILE
      default:
        break;
    }
    col += L * nv;
  }
}

// b: packed in panels (to_panels with this version's lanes). Panels [p0, p1) outside, blocks
// of 4 rows (then the 1 to 3 left) inside.
template <class V>
TANDEM_SIMD_INLINE void gemm_panels_body(int64_t M, int64_t N, int64_t K, const float* a,
                                         int64_t lda, const float* b, const float* init, float* c,
                                         int64_t ldc, int64_t p0, int64_t p1) {
  const Panels panels(N, simd::lanes<V>);
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t col = panels.col(p), width = panels.width(p);
    const float* bp = b + col * K;
    const float* in = init ? init + col : nullptr;
    float* cp = c + col;
    int64_t m = 0;
    for (; m + 4 <= M; m += 4)
      panel_rows<V, 4>(width, K, a + m * lda, lda, bp, in, cp + m * ldc, ldc);
    switch (M - m) {
      case 3:
        panel_rows<V, 3>(width, K, a + m * lda, lda, bp, in, cp + m * ldc, ldc);
        break;
      case 2:
        panel_rows<V, 2>(width, K, a + m * lda, lda, bp, in, cp + m * ldc, ldc);
        break;
      case 1:
        panel_rows<V, 1>(width, K, a + m * lda, lda, bp, in, cp + m * ldc, ldc);
        break;
      default:
        break;
    }
  }
}

TANDEM_SIMD_DISPATCH_AT(gemm_panels,
                        (int64_t M, int64_t N, int64_t K, const float* a, int64_t lda,
                         const float* b, const float* init, float* c, int64_t ldc, int64_t p0,
                         int64_t p1),
                        (M, N, K, a, lda, b, init, c, ldc, p0, p1))

// All of the panels, at `level`.
void gemm(int level, int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b,
          const float* init, float* c, int64_t ldc) {
  gemm_panels(level, M, N, K, a, lda, b, init, c, ldc, 0, Panels(N, simd::lanes_at(level)).count);
}

// ---- Cells: one step of one batch row ------------------------------------------------------

// What one direction's steps need.
struct Direction {
  int64_t hidden = 0, hp = 0, n = 0;  // H, H padded to whole vectors, gates * Hp
  const float* r = nullptr;           // packed R [H, N] (GRU without linear_before_reset:
  const float* r_h = nullptr;         // [H, 2 Hp] for z, r and r_h [H, Hp] for h)
  const float* rbh = nullptr;         // GRU: Rb of the h gate [Hp]
  const float* peep = nullptr;        // LSTM: [Pi; Po; Pf], each [Hp]; nullptr when absent
  Act f, g, h;                        // f, g[, h]
  float clip = 0;                     // 0: none
  bool input_forget = false, linear_before_reset = false;
  bool standard = false;  // the default activations and no clip (see Acts)
};

template <class V>
struct Clip {
  bool on;
  V lo, hi;
  TANDEM_SIMD_INLINE explicit Clip(float c) : on(c > 0), lo(splat<V>(-c)), hi(splat<V>(c)) {}
  // NaN passes through (both tests fail), as std::clamp lets it in the reference.
  TANDEM_SIMD_INLINE V operator()(V v) const {
    if (!on) return v;
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
  }
};

// The activations as the cells apply them, clip included. kStd: the ONNX defaults (f sigmoid,
// g and h tanh; RNN's f tanh) and no clip, known at compile time: straight-line code for the
// common case.
template <class V, bool kStd>
struct Acts {
  const Direction& d;
  Clip<V> clip;
  TANDEM_SIMD_INLINE explicit Acts(const Direction& dir) : d(dir), clip(dir.clip) {}
  TANDEM_SIMD_INLINE V f(V x) const { return kStd ? simd::sigmoid(x) : apply(d.f, clip(x)); }
  TANDEM_SIMD_INLINE V g(V x) const { return kStd ? simd::tanh_rational(x) : apply(d.g, clip(x)); }
  TANDEM_SIMD_INLINE V h(V x) const {
    return kStd ? simd::tanh_rational(x) : apply(d.h, x);
  }  // unclipped
};

// xw: the row's input projection (with the biases), hr: h R^T; updates h.
template <class V, bool kStd>
TANDEM_SIMD_INLINE void rnn_cell(const Direction& d, const float* xw, const float* hr, float* h) {
  const Clip<V> clip(d.clip);
  for (int64_t j = 0; j < d.hp; j += simd::lanes<V>) {
    const V v = add<V>(xw + j, hr + j);
    store(h + j, kStd ? simd::tanh_rational(v) : apply(d.f, clip(v)));
  }
}

// Gates i, o, f, c at 0, Hp, 2 Hp, 3 Hp; updates h and c.
template <class V, bool kStd>
TANDEM_SIMD_INLINE void lstm_cell(const Direction& d, const float* xw, const float* hr, float* h,
                                  float* c) {
  const Acts<V, kStd> act(d);
  const int64_t hp = d.hp;
  for (int64_t j = 0; j < hp; j += simd::lanes<V>) {
    const V c0 = load<V>(c + j);
    V pi = add<V>(xw + j, hr + j), po = add<V>(xw + hp + j, hr + hp + j);
    V pf = add<V>(xw + 2 * hp + j, hr + 2 * hp + j);
    if (d.peep) {
      pi = load<V>(d.peep + j) * c0 + pi;
      pf = load<V>(d.peep + 2 * hp + j) * c0 + pf;
    }
    const V fg = act.f(pf);
    const V ig = d.input_forget ? 1.0f - fg : act.f(pi);
    const V cc = act.g(add<V>(xw + 3 * hp + j, hr + 3 * hp + j));
    const V c1 = fg * c0 + ig * cc;
    if (d.peep) po = load<V>(d.peep + hp + j) * c1 + po;
    const V og = act.f(po);
    store(c + j, c1);
    store(h + j, og * act.h(c1));
  }
}

// GRU with linear_before_reset: h~ = g(xw_h + r (hr_h + Rb_h)). Gates z, r, h at 0, Hp, 2 Hp.
template <class V, bool kStd>
TANDEM_SIMD_INLINE void gru_lbr_cell(const Direction& d, const float* xw, const float* hr,
                                     float* h) {
  const Acts<V, kStd> act(d);
  const int64_t hp = d.hp;
  for (int64_t j = 0; j < hp; j += simd::lanes<V>) {
    const V z = act.f(add<V>(xw + j, hr + j));
    const V r = act.f(add<V>(xw + hp + j, hr + hp + j));
    const V rec = add<V>(hr + 2 * hp + j, d.rbh + j);
    const V hh = act.g(r * rec + load<V>(xw + 2 * hp + j));
    const V h0 = load<V>(h + j);
    store(h + j, z * (h0 - hh) + hh);  // (1-z) hh + z h
  }
}

// GRU without linear_before_reset, first half: z into hr's z slot, r (.) h into rh.
template <class V, bool kStd>
TANDEM_SIMD_INLINE void gru_gates(const Direction& d, const float* xw, float* hr, const float* h,
                                  float* rh) {
  const Acts<V, kStd> act(d);
  const int64_t hp = d.hp;
  for (int64_t j = 0; j < hp; j += simd::lanes<V>) {
    const V z = act.f(add<V>(xw + j, hr + j));
    const V r = act.f(add<V>(xw + hp + j, hr + hp + j));
    store(hr + j, z);
    store(rh + j, r * load<V>(h + j));
  }
}

// Second half: hr's h slot holds (r (.) h) R_h^T; h~ = g(xw_h + that + Rb_h).
template <class V, bool kStd>
TANDEM_SIMD_INLINE void gru_finish(const Direction& d, const float* xw, const float* hr, float* h) {
  const Acts<V, kStd> act(d);
  const int64_t hp = d.hp;
  for (int64_t j = 0; j < hp; j += simd::lanes<V>) {
    const V z = load<V>(hr + j);
    const V v = add<V>(xw + 2 * hp + j, hr + 2 * hp + j) + load<V>(d.rbh + j);
    const V hh = act.g(v);
    const V h0 = load<V>(h + j);
    store(h + j, z * (h0 - hh) + hh);
  }
}

// Which cell step `cell_step` runs.
enum class Step { kRnn, kLstm, kGruLbr, kGruGates, kGruFinish };

template <class V, bool kStd>
TANDEM_SIMD_INLINE void cell_step_std(Step step, const Direction& d, const float* xw, float* hr,
                                      float* h, float* aux) {
  switch (step) {
    case Step::kRnn:
      rnn_cell<V, kStd>(d, xw, hr, h);
      break;
    case Step::kLstm:
      lstm_cell<V, kStd>(d, xw, hr, h, aux);  // aux: c
      break;
    case Step::kGruLbr:
      gru_lbr_cell<V, kStd>(d, xw, hr, h);
      break;
    case Step::kGruGates:
      gru_gates<V, kStd>(d, xw, hr, h, aux);  // aux: r (.) h
      break;
    case Step::kGruFinish:
      gru_finish<V, kStd>(d, xw, hr, h);
      break;
  }
}

template <class V>
TANDEM_SIMD_INLINE void cell_step_body(Step step, const Direction& d, const float* xw, float* hr,
                                       float* h, float* aux) {
  if (d.standard) {
    cell_step_std<V, true>(step, d, xw, hr, h, aux);
  } else {
    cell_step_std<V, false>(step, d, xw, hr, h, aux);
  }
}

// One step of one batch row, with the vectors of `level` (those the weights were packed for).
TANDEM_SIMD_DISPATCH_AT(cell_step,
                        (Step step, const Direction& d, const float* xw, float* hr, float* h,
                         float* aux),
                        (step, d, xw, hr, h, aux))

// ---- The kernel ----------------------------------------------------------------------------

// Where a (t, b) row, a state row and an output row live, for layout 0 or 1.
struct Geometry {
  int64_t seq = 0, batch = 0, in = 0, hidden = 0, dirs = 1, layout = 0;
  int64_t x_row(int64_t t, int64_t b) const { return layout == 0 ? t * batch + b : b * seq + t; }
  int64_t y_at(int64_t t, int64_t d, int64_t b) const {
    return (layout == 0 ? (t * dirs + d) * batch + b : (b * seq + t) * dirs + d) * hidden;
  }
  int64_t state_at(int64_t d, int64_t b) const {
    return (layout == 0 ? d * batch + b : b * dirs + d) * hidden;
  }
};

// Work (multiply-adds) below which a parallel loop costs more than it saves: ~2M is some 20 us on
// one core, against a few us to wake the other threads.
constexpr int64_t kParallelWork = int64_t{1} << 21;

class RecurrentKernel : public FallbackKernel {
 public:
  RecurrentKernel(const Node& node, Cell cell, const RecurrentAttrs& attrs)
      : FallbackKernel(node), cell_(cell), acts_(attrs.activations) {
    gates_ = cell == Cell::kLstm ? 4 : cell == Cell::kGru ? 3 : 1;
    dirs_ = attrs.dirs;
    reverse_only_ = attrs.reverse_only;
    layout_ = attrs.layout;
    clip_ = attrs.clip;
    input_forget_ = attrs.input_forget;
    linear_before_reset_ = attrs.linear_before_reset;
    for (size_t i = 1; i < constant_.size(); ++i) {
      constant_[i] = node.has_input(i) && node.inputs[i]->is_constant();
    }
    for (const RecurrentActivation& a : acts_) act_kinds_.push_back(act_of(a));
  }

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    auto in = [&](size_t i) { return i < inputs.size() ? inputs[i] : nullptr; };
    auto out = [&](size_t i) { return i < outputs.size() ? outputs[i] : nullptr; };
    // A session runs one graph at a time, but the lock keeps the packed weights and buffers
    // safe should a kernel ever be shared.
    std::lock_guard<std::mutex> lock(mu_);
    Geometry geo;
    if (!applies(in, out, geo, lens_)) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    // The packed layout depends on the vector width: a new level (simd::cap_level) repacks.
    if (const int level = simd::level(); level != level_) {
      level_ = level;
      packed_.fill(false);
    }
    pack(geo, in(1), in(2), in(3), cell_ == Cell::kLstm ? in(7) : nullptr);
    project_inputs(ctx, geo, *in(0));
    run_steps(ctx, geo, lens_, in(5), cell_ == Cell::kLstm ? in(6) : nullptr, out(0), out(1),
              cell_ == Cell::kLstm ? out(2) : nullptr);
  }

 private:
  // Whether the fast path handles these tensors (float32, the shapes the schema promises,
  // sequence lengths within [0, seq]); fills the geometry and the lengths when it does.
  template <class In, class Out>
  bool applies(const In& in, const Out& out, Geometry& geo, std::vector<int64_t>& lens) const {
    const Tensor *x = in(0), *w = in(1), *r = in(2);
    if (!x || !w || !r || x->rank() != 3 || w->rank() != 3 || r->rank() != 3) return false;
    const size_t last_float = cell_ == Cell::kLstm ? 7 : 5;
    for (size_t i = 0; i <= last_float; ++i) {
      if (i != 4 && in(i) && in(i)->dtype() != DataType::kFloat32) return false;
    }
    for (size_t i = 0; i < 3; ++i) {
      if (out(i) && out(i)->dtype() != DataType::kFloat32) return false;
    }
    geo.layout = layout_;
    geo.dirs = dirs_;
    geo.seq = x->dim(layout_ == 0 ? 0 : 1);
    geo.batch = x->dim(layout_ == 0 ? 1 : 0);
    geo.in = x->dim(2);
    geo.hidden = r->dim(2);
    const int64_t gh = gates_ * geo.hidden;
    if (geo.seq == 0 || geo.batch == 0 || geo.hidden == 0) return false;
    if (!dims_are(w, {dirs_, gh, geo.in}) || !dims_are(r, {dirs_, gh, geo.hidden})) return false;
    if (in(3) && !dims_are(in(3), {dirs_, 2 * gh})) return false;
    if (cell_ == Cell::kLstm && in(7) && !dims_are(in(7), {dirs_, 3 * geo.hidden})) return false;
    const int64_t state = dirs_ * geo.batch * geo.hidden;  // initial_h, ... (layout 0 or 1)
    const int64_t s0 = layout_ == 0 ? dirs_ : geo.batch, s1 = layout_ == 0 ? geo.batch : dirs_;
    for (size_t i : {size_t{5}, size_t{6}}) {
      if (in(i) && (i == 5 || cell_ == Cell::kLstm) && !dims_are(in(i), {s0, s1, geo.hidden})) {
        return false;
      }
    }
    // The outputs the schema inferred; checked so that nothing is written out of bounds.
    if (out(0) && out(0)->numel() != geo.seq * state) return false;
    if ((out(1) && out(1)->numel() != state) || (out(2) && out(2)->numel() != state)) return false;
    lens.assign(static_cast<size_t>(geo.batch), geo.seq);
    if (const Tensor* sl = in(4)) {
      if (sl->numel() != geo.batch) return false;
      for (int64_t b = 0; b < geo.batch; ++b) {
        int64_t v;
        if (sl->dtype() == DataType::kInt32)
          v = sl->data<int32_t>()[b];
        else if (sl->dtype() == DataType::kInt64)
          v = sl->data<int64_t>()[b];
        else
          return false;
        if (v < 0 || v > geo.seq) return false;  // the reference kernel says what is wrong
        lens[static_cast<size_t>(b)] = v;
      }
    }
    return true;
  }

  // GRU without linear_before_reset: h's gate needs r first, so a step is two GEMMs.
  bool gru_two_phase() const { return cell_ == Cell::kGru && !linear_before_reset_; }

  // Packs what is not packed yet (constants) or changes per call (the rest).
  void pack(const Geometry& geo, const Tensor* w, const Tensor* r, const Tensor* b,
            const Tensor* p) {
    const int64_t lanes = simd::lanes_at(level_);
    const int64_t H = geo.hidden, hp = round_up(H, lanes), n = gates_ * hp, dirs = dirs_;
    if (hp_ != hp || in_ != geo.in) {  // new sizes (a model whose weights are inputs)
      packed_.fill(false);
      hp_ = hp;
      in_ = geo.in;
    }
    // Gates [k0, k1) of src (one direction's [gates * H, K]) transposed into dense [K, ld]
    // from column `col`, each gate's units padded to Hp.
    auto transpose = [&](const float* src, int64_t K, int64_t k0, int64_t k1, int64_t ld,
                         int64_t col, std::vector<float>& dense) {
      for (int64_t k = k0; k < k1; ++k)
        for (int64_t j = 0; j < H; ++j)
          for (int64_t i = 0; i < K; ++i)
            dense[i * ld + col + (k - k0) * hp + j] = src[(k * H + j) * K + i];
    };
    if (!packed_[1]) {  // all directions side by side: [input, dirs * N]
      std::vector<float> dense(static_cast<size_t>(geo.in * dirs * n), 0.0f);
      for (int64_t d = 0; d < dirs; ++d)
        transpose(w->data<float>() + d * gates_ * H * geo.in, geo.in, 0, gates_, dirs * n, d * n,
                  dense);
      wp_ = to_panels(dense, geo.in, dirs * n, lanes);
      packed_[1] = constant_[1];
    }
    if (!packed_[2]) {  // per direction [H, N]; GRU without linear_before_reset: [H, 2 Hp], [H, Hp]
      rp_.resize(static_cast<size_t>(dirs * H * n));
      const int64_t split = gru_two_phase() ? 2 : gates_;
      for (int64_t d = 0; d < dirs; ++d) {
        const float* src = r->data<float>() + d * gates_ * H * H;
        for (auto [k0, k1] : {std::pair<int64_t, int64_t>{0, split}, {split, gates_}}) {
          if (k0 == k1) continue;
          const int64_t cols = (k1 - k0) * hp;
          std::vector<float> dense(static_cast<size_t>(H * cols), 0.0f);
          transpose(src, H, k0, k1, cols, 0, dense);
          const Floats panels = to_panels(dense, H, cols, lanes);
          std::copy(panels.begin(), panels.end(), rp_.begin() + d * H * n + k0 * hp * H);
        }
      }
      packed_[2] = constant_[2];
    }
    if (!packed_[3]) {
      xb_.assign(static_cast<size_t>(dirs * n), 0.0f);
      rbh_.assign(static_cast<size_t>(dirs * hp), 0.0f);
      if (b) {
        const int64_t gh = gates_ * H;
        for (int64_t d = 0; d < dirs; ++d) {
          const float* wb = b->data<float>() + d * 2 * gh;
          const float* rb = wb + gh;
          for (int64_t k = 0; k < gates_; ++k) {
            for (int64_t j = 0; j < H; ++j) {
              const bool apart = cell_ == Cell::kGru && k == 2;  // GRU's Rb_h
              xb_[d * n + k * hp + j] = wb[k * H + j] + (apart ? 0.0f : rb[k * H + j]);
              if (apart) rbh_[d * hp + j] = rb[k * H + j];
            }
          }
        }
      }
      packed_[3] = constant_[3] || !b;
    }
    if (!packed_[7]) {
      pp_.assign(p ? static_cast<size_t>(dirs * 3 * hp) : 0, 0.0f);
      if (p) {
        for (int64_t d = 0; d < dirs; ++d)
          for (int64_t k = 0; k < 3; ++k)
            for (int64_t j = 0; j < H; ++j)
              pp_[(d * 3 + k) * hp + j] = p->data<float>()[(d * 3 + k) * H + j];
      }
      packed_[7] = constant_[7] || !p;
    }
  }

  // xw_ [seq * batch, dirs * N] = X W^T + biases, rows in X's order.
  void project_inputs(const KernelContext& ctx, const Geometry& geo, const Tensor& x) {
    const int64_t rows = geo.seq * geo.batch, ld = dirs_ * gates_ * hp_;
    xw_.resize(static_cast<size_t>(rows * ld));
    const float* xd = x.data<float>();
    auto run = [&](int64_t p0, int64_t p1) {
      gemm_panels(level_, rows, ld, geo.in, xd, geo.in, wp_.data(), xb_.data(), xw_.data(), ld, p0,
                  p1);
    };
    // In parallel: the panels (each thread reads its share of W).
    const int threads = ctx.pool.size();
    const int64_t panels = Panels(ld, simd::lanes_at(level_)).count;
    if (threads > 1 && panels > 1 && rows * ld * geo.in >= kParallelWork) {
      ctx.pool.parallel_for(panels, run);
    } else {
      run(0, panels);
    }
  }

  Direction direction(int64_t d, int64_t hidden) const {
    Direction dir;
    dir.hidden = hidden;
    dir.hp = hp_;
    dir.n = gates_ * hp_;
    dir.r = rp_.data() + d * hidden * dir.n;
    dir.r_h = dir.r + 2 * hp_ * hidden;
    dir.rbh = rbh_.data() + d * hp_;
    dir.peep = pp_.empty() ? nullptr : pp_.data() + d * 3 * hp_;
    const size_t per = acts_.size() / static_cast<size_t>(dirs_);
    const size_t base = static_cast<size_t>(d) * per;
    dir.f = act_kinds_[base];
    dir.g = act_kinds_[base + (per > 1 ? 1 : 0)];
    dir.h = act_kinds_[base + (per > 2 ? 2 : 0)];
    dir.clip = clip_;
    dir.input_forget = input_forget_;
    dir.linear_before_reset = linear_before_reset_;
    // (RNN has f only, GRU f and g.)
    const bool tanh_g = cell_ == Cell::kRnn || dir.g.kind == ActKind::kTanh;
    const bool tanh_h = cell_ != Cell::kLstm || dir.h.kind == ActKind::kTanh;
    const ActKind f = cell_ == Cell::kRnn ? ActKind::kTanh : ActKind::kSigmoid;
    dir.standard = clip_ <= 0 && dir.f.kind == f && tanh_g && tanh_h;
    return dir;
  }

  static Act act_of(const RecurrentActivation& a) {
    Act act;
    act.scalar = &a;
    if (a.name == "sigmoid")
      act.kind = ActKind::kSigmoid;
    else if (a.name == "tanh")
      act.kind = ActKind::kTanh;
    else if (a.name == "relu")
      act.kind = ActKind::kRelu;
    return act;
  }

  void run_steps(const KernelContext& ctx, const Geometry& geo, const std::vector<int64_t>& lens,
                 const Tensor* h0, const Tensor* c0, Tensor* y, Tensor* yh, Tensor* yc) {
    const int64_t H = geo.hidden, hp = hp_, n = gates_ * hp;
    // Y entries past a row's length stay zero.
    if (y && *std::min_element(lens.begin(), lens.end()) < geo.seq) {
      std::memset(y->data<float>(), 0, y->nbytes());
    }
    // Tasks: (direction, batch chunk), run in parallel only when the work pays for the threads;
    // the batch is split only when there are more threads than directions.
    const int threads = ctx.pool.size();
    const bool parallel = threads > 1 && geo.seq * geo.batch * H * n * dirs_ >= kParallelWork;
    int64_t chunks = 1;
    if (parallel) chunks = std::min<int64_t>(geo.batch, std::max<int64_t>(1, threads / dirs_));
    const int64_t chunk_rows = (geo.batch + chunks - 1) / chunks;
    const int64_t per_task = chunk_rows * (3 * hp + n);  // h, c, rh, gates
    scratch_.resize(static_cast<size_t>(dirs_ * chunks * per_task));
    auto task = [&](int64_t id) {
      const int64_t d = id / chunks, b0 = (id % chunks) * chunk_rows;
      const int64_t b1 = std::min(geo.batch, b0 + chunk_rows);
      if (b0 >= b1) return;
      float* s = scratch_.data() + id * per_task;
      float *h = s, *c = h + chunk_rows * hp, *rh = c + chunk_rows * hp,
            *gates = rh + chunk_rows * hp;
      run_direction(geo, d, b0, b1, lens, h0, c0, h, c, rh, gates, y, yh, yc);
    };
    const int64_t tasks = dirs_ * chunks;
    if (parallel && tasks > 1) {
      ctx.pool.parallel_for(tasks, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) task(t);
      });
    } else {
      for (int64_t t = 0; t < tasks; ++t) task(t);
    }
  }

  // Direction d over batch rows [b0, b1): the steps, then Y_h / Y_c.
  void run_direction(const Geometry& geo, int64_t d, int64_t b0, int64_t b1,
                     const std::vector<int64_t>& lens, const Tensor* h0, const Tensor* c0, float* h,
                     float* c, float* rh, float* gates, Tensor* y, Tensor* yh, Tensor* yc) const {
    const Direction dir = direction(d, geo.hidden);
    const int64_t H = geo.hidden, hp = dir.hp, n = dir.n, rows = b1 - b0;
    const bool backward = reverse_only_ || d == 1;
    const int64_t ld = dirs_ * n;  // xw_ row stride
    std::fill(h, h + rows * hp, 0.0f);
    std::fill(c, c + rows * hp, 0.0f);
    for (int64_t i = 0; i < rows; ++i) {
      if (h0) std::copy_n(h0->data<float>() + geo.state_at(d, b0 + i), H, h + i * hp);
      if (c0) std::copy_n(c0->data<float>() + geo.state_at(d, b0 + i), H, c + i * hp);
    }
    int64_t steps = 0;
    for (int64_t i = b0; i < b1; ++i) steps = std::max(steps, lens[static_cast<size_t>(i)]);
    float* yd = y ? y->data<float>() : nullptr;
    const Step first_step = cell_ == Cell::kRnn    ? Step::kRnn
                            : cell_ == Cell::kLstm ? Step::kLstm
                            : linear_before_reset_ ? Step::kGruLbr
                                                   : Step::kGruGates;
    for (int64_t s = 0; s < steps; ++s) {
      // h R^T for every row (a finished row's result is not used).
      gemm(level_, rows, gru_two_phase() ? 2 * hp : n, H, h, hp, dir.r, nullptr, gates, n);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t len = lens[static_cast<size_t>(b0 + i)];
        if (s >= len) continue;
        const int64_t t = backward ? len - 1 - s : s;
        const float* xw = xw_.data() + geo.x_row(t, b0 + i) * ld + d * n;
        float* hi = h + i * hp;
        float* gi = gates + i * n;
        cell_step(level_, first_step, dir, xw, gi, hi,
                  cell_ == Cell::kLstm ? c + i * hp : rh + i * hp);
      }
      if (gru_two_phase()) {
        gemm(level_, rows, hp, H, rh, hp, dir.r_h, nullptr, gates + 2 * hp, n);
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t len = lens[static_cast<size_t>(b0 + i)];
          if (s >= len) continue;
          const int64_t t = backward ? len - 1 - s : s;
          cell_step(level_, Step::kGruFinish, dir, xw_.data() + geo.x_row(t, b0 + i) * ld + d * n,
                    gates + i * n, h + i * hp, nullptr);
        }
      }
      if (yd) {
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t len = lens[static_cast<size_t>(b0 + i)];
          if (s >= len) continue;
          const int64_t t = backward ? len - 1 - s : s;
          std::copy_n(h + i * hp, H, yd + geo.y_at(t, d, b0 + i));
        }
      }
    }
    for (int64_t i = 0; i < rows; ++i) {
      if (yh) std::copy_n(h + i * hp, H, yh->data<float>() + geo.state_at(d, b0 + i));
      if (yc) std::copy_n(c + i * hp, H, yc->data<float>() + geo.state_at(d, b0 + i));
    }
  }

  Cell cell_;
  std::vector<RecurrentActivation> acts_;  // per direction: f, g[, h]
  std::vector<Act> act_kinds_;             // the same, as the vector loops apply them
  int64_t gates_ = 1, dirs_ = 1, layout_ = 0;
  bool reverse_only_ = false, input_forget_ = false, linear_before_reset_ = false;
  float clip_ = 0;
  std::array<bool, 8> constant_{};  // input i is a constant of the model
  std::array<bool, 8> packed_{};    // input i's packed form is current (W 1, R 2, B 3, P 7)
  int level_ = -1;                  // the simd level the packed weights are for
  int64_t hp_ = 0, in_ = 0;         // the sizes the packed weights have
  Floats wp_, rp_, xb_, rbh_, pp_;  // packed W, R, input-side bias, GRU Rb_h, P
  Floats xw_, scratch_;             // per call: input projection, states
  std::vector<int64_t> lens_;       // per call: each batch row's length
  std::mutex mu_;
};

// Declines (nullptr → the reference backend) what the graph shows the fast path does not do:
// another dtype than float32. Unreadable activations are left to the
// reference kernel too, which reports them.
template <Cell kCell>
std::unique_ptr<Kernel> make_recurrent(const Node& node) {
  if (!node.has_input(0) || known_not_float32(node.inputs[0])) return nullptr;
  RecurrentAttrs attrs;
  try {
    attrs = RecurrentAttrs::parse(node);
  } catch (const Error&) {
    return nullptr;
  }
  return std::make_unique<RecurrentKernel>(node, kCell, attrs);
}

}  // namespace

void register_recurrent_kernels(KernelRegistry& r) {
  r.add("RNN", make_recurrent<Cell::kRnn>);
  r.add("GRU", make_recurrent<Cell::kGru>);
  r.add("LSTM", make_recurrent<Cell::kLstm>);
}

}  // namespace tandem::cpu

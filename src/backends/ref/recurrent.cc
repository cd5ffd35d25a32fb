// Reference kernels of the recurrent family: RNN, GRU, LSTM. Computed in double, one
// (direction, batch row) sequence at a time; the rows are independent.
//
// Gate weights are stacked along W/R's second axis: LSTM i,o,f,c; GRU z,r,h; RNN one gate.
// B = [Wb; Rb]; LSTM peepholes P = [Pi; Po; Pf]. With sequence_lens, row b runs only its first
// len[b] steps (backwards from len[b]-1 in reverse), its later Y entries stay zero and Y_h/Y_c
// hold the state after its last step. `clip` bounds every gate pre-activation.
#include "ops/recurrent.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/value_io.h"
#include "core/error.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

enum class Cell { kRnn, kGru, kLstm };

struct Recurrent {
  Cell cell;
  int64_t seq, batch, in, hidden, dirs, gates, layout;
  bool reverse_only;
  double clip;
  bool linear_before_reset, input_forget;
  std::vector<RecurrentActivation> acts;  // per direction: f, g[, h]
  std::vector<double> x, w, r, b, h0, c0, p;
  std::vector<int64_t> lens;

  size_t x_at(int64_t t, int64_t bb, int64_t i) const {
    return static_cast<size_t>((layout == 0 ? t * batch + bb : bb * seq + t) * in + i);
  }
  size_t y_at(int64_t t, int64_t d, int64_t bb, int64_t j) const {
    return static_cast<size_t>(
        (layout == 0 ? (t * dirs + d) * batch + bb : (bb * seq + t) * dirs + d) * hidden + j);
  }
  size_t state_at(int64_t d, int64_t bb, int64_t j) const {
    return static_cast<size_t>((layout == 0 ? d * batch + bb : bb * dirs + d) * hidden + j);
  }
  double clipped(double v) const { return clip > 0 ? std::clamp(v, -clip, clip) : v; }

  // x_t W_k^T + Wb_k (+ Rb_k) for gate k, unit j; `hx` (when non-null) adds hx R_k^T + Rb_k.
  double input_part(int64_t d, int64_t k, int64_t j, int64_t t, int64_t bb) const {
    const int64_t row = k * hidden + j;
    double s = b.empty() ? 0 : b[static_cast<size_t>(d * 2 * gates * hidden + row)];
    const double* wr = &w[static_cast<size_t>((d * gates * hidden + row) * in)];
    for (int64_t i = 0; i < in; ++i) s += x[x_at(t, bb, i)] * wr[i];
    return s;
  }
  double hidden_part(int64_t d, int64_t k, int64_t j, const std::vector<double>& hx) const {
    const int64_t row = k * hidden + j;
    double s =
        b.empty() ? 0 : b[static_cast<size_t>(d * 2 * gates * hidden + gates * hidden + row)];
    const double* rr = &r[static_cast<size_t>((d * gates * hidden + row) * hidden)];
    for (int64_t i = 0; i < hidden; ++i) s += hx[static_cast<size_t>(i)] * rr[i];
    return s;
  }

  // One step of direction d for row bb at time t: updates h (and c).
  void step(int64_t d, int64_t t, int64_t bb, std::vector<double>& h,
            std::vector<double>& c) const {
    const size_t na = acts.size() / static_cast<size_t>(dirs);
    const RecurrentActivation& f = acts[static_cast<size_t>(d) * na];
    const RecurrentActivation& g = acts[static_cast<size_t>(d) * na + (na > 1 ? 1 : 0)];
    const RecurrentActivation& ha = acts[static_cast<size_t>(d) * na + (na > 2 ? 2 : 0)];
    const size_t H = static_cast<size_t>(hidden);
    // Every gate's two halves: xw[k*H+j] = x_t W_k^T + Wb_k, hr[k*H+j] = h R_k^T + Rb_k.
    std::vector<double> xw(static_cast<size_t>(gates) * H), hr(xw.size());
    for (int64_t k = 0; k < gates; ++k) {
      for (int64_t j = 0; j < hidden; ++j) {
        xw[static_cast<size_t>(k * hidden + j)] = input_part(d, k, j, t, bb);
        hr[static_cast<size_t>(k * hidden + j)] = hidden_part(d, k, j, h);
      }
    }
    auto pre = [&](int64_t k, size_t u) { return xw[k * H + u] + hr[k * H + u]; };
    std::vector<double> nh(H);
    if (cell == Cell::kRnn) {
      for (size_t u = 0; u < H; ++u) nh[u] = f(clipped(pre(0, u)));
    } else if (cell == Cell::kGru) {
      std::vector<double> z(H), rg(H), rh(H);
      for (size_t u = 0; u < H; ++u) {
        z[u] = f(clipped(pre(0, u)));
        rg[u] = f(clipped(pre(1, u)));
        rh[u] = rg[u] * h[u];
      }
      for (size_t u = 0; u < H; ++u) {
        const int64_t j = static_cast<int64_t>(u);
        // linear_before_reset: r ⊙ (h R_h^T + Rb_h); otherwise (r ⊙ h) R_h^T + Rb_h.
        double hh = g(clipped(xw[2 * H + u] + (linear_before_reset ? rg[u] * hr[2 * H + u]
                                                                   : hidden_part(d, 2, j, rh))));
        nh[u] = (1 - z[u]) * hh + z[u] * h[u];
      }
    } else {
      auto peep = [&](int64_t k, size_t u) {  // P = [Pi, Po, Pf]
        return p.empty() ? 0.0 : p[static_cast<size_t>(d * 3 * hidden + k * hidden) + u];
      };
      for (size_t u = 0; u < H; ++u) {
        double fg = f(clipped(pre(2, u) + peep(2, u) * c[u]));
        double ig = input_forget ? 1 - fg : f(clipped(pre(0, u) + peep(0, u) * c[u]));
        double cc = g(clipped(pre(3, u)));
        c[u] = fg * c[u] + ig * cc;
        double og = f(clipped(pre(1, u) + peep(1, u) * c[u]));
        nh[u] = og * ha(c[u]);
      }
    }
    h = std::move(nh);
  }
};

template <Cell kCell>
void recurrent_kernel(const KernelContext& ctx, const RecurrentAttrs& attrs,
                      std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  auto opt = [&](size_t i) { return i < inputs.size() ? inputs[i] : nullptr; };
  const Tensor& x = *inputs[0];
  Recurrent rc;
  rc.cell = kCell;
  rc.layout = attrs.layout;
  rc.seq = x.dim(rc.layout == 0 ? 0 : 1);
  rc.batch = x.dim(rc.layout == 0 ? 1 : 0);
  rc.in = x.dim(2);
  rc.hidden = inputs[2]->dim(2);
  rc.dirs = attrs.dirs;
  rc.reverse_only = attrs.reverse_only;
  rc.gates = kCell == Cell::kLstm ? 4 : kCell == Cell::kGru ? 3 : 1;
  rc.clip = attrs.clip;
  rc.linear_before_reset = attrs.linear_before_reset;
  rc.input_forget = attrs.input_forget;
  rc.acts = attrs.activations;
  rc.x = read_doubles(x, node);
  rc.w = read_doubles(*inputs[1], node);
  rc.r = read_doubles(*inputs[2], node);
  if (opt(3)) rc.b = read_doubles(*opt(3), node);
  rc.lens.assign(static_cast<size_t>(rc.batch), rc.seq);
  if (opt(4)) rc.lens = tensor_to_int64s(*opt(4), node);
  for (int64_t len : rc.lens) {
    TANDEM_CHECK(len >= 0 && len <= rc.seq, ErrorCode::kInvalidArgument,
                 "{}: sequence length {} is outside [0, {}]", node.describe(), len, rc.seq);
  }
  if (opt(5)) rc.h0 = read_doubles(*opt(5), node);
  if (kCell == Cell::kLstm && opt(6)) rc.c0 = read_doubles(*opt(6), node);
  if (kCell == Cell::kLstm && opt(7)) rc.p = read_doubles(*opt(7), node);

  const int64_t H = rc.hidden;
  const int64_t state_n = rc.dirs * rc.batch * H;
  std::vector<double> y(static_cast<size_t>(rc.seq * state_n), 0.0);
  std::vector<double> yh(static_cast<size_t>(state_n)), yc(static_cast<size_t>(state_n));
  ctx.pool.parallel_for(rc.dirs * rc.batch, [&](int64_t begin, int64_t end) {
    for (int64_t db = begin; db < end; ++db) {
      const int64_t d = db / rc.batch, bb = db % rc.batch;
      const bool backward = rc.reverse_only || d == 1;
      std::vector<double> h(static_cast<size_t>(H), 0.0), c(static_cast<size_t>(H), 0.0);
      for (int64_t j = 0; j < H; ++j) {
        if (!rc.h0.empty()) h[static_cast<size_t>(j)] = rc.h0[rc.state_at(d, bb, j)];
        if (!rc.c0.empty()) c[static_cast<size_t>(j)] = rc.c0[rc.state_at(d, bb, j)];
      }
      const int64_t len = rc.lens[static_cast<size_t>(bb)];
      for (int64_t s = 0; s < len; ++s) {
        const int64_t t = backward ? len - 1 - s : s;
        rc.step(d, t, bb, h, c);
        for (int64_t j = 0; j < H; ++j) y[rc.y_at(t, d, bb, j)] = h[static_cast<size_t>(j)];
      }
      for (int64_t j = 0; j < H; ++j) {
        yh[rc.state_at(d, bb, j)] = h[static_cast<size_t>(j)];
        yc[rc.state_at(d, bb, j)] = c[static_cast<size_t>(j)];
      }
    }
  });
  if (outputs.size() > 0 && outputs[0]) write_doubles(*outputs[0], y, node);
  if (outputs.size() > 1 && outputs[1]) write_doubles(*outputs[1], yh, node);
  if (outputs.size() > 2 && outputs[2]) write_doubles(*outputs[2], yc, node);
}

}  // namespace

void register_recurrent_ref_kernels(KernelRegistry& r) {
  r.add("RNN", recurrent_kernel<Cell::kRnn>);
  r.add("GRU", recurrent_kernel<Cell::kGru>);
  r.add("LSTM", recurrent_kernel<Cell::kLstm>);
}

}  // namespace tandem

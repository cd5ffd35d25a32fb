// Reference kernels of the conv family: Conv, ConvTranspose and FusedConv (kFusedDomain).
//
// 1-D and 2-D convolutions are run as 3-D ones with leading spatial axes of size 1, so there is
// one loop nest per op. The loops are direct (no im2col): for every output channel plane, each
// (input channel, kernel tap) pair adds a scaled shifted copy of the input plane, with the
// innermost loop running over a contiguous output row. The in-bounds part of each row is computed
// up front, so the inner loop has no branches. Work is split over (batch, output channel).
#include "ops/conv.h"

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "backends/ref/layout.h"
#include "core/error.h"
#include "ops/fused_activation.h"
#include "ops/layout.h"
#include "ops/schema.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

// The geometry of one conv, with every spatial vector padded to 3 axes (leading 1s).
struct Geometry {
  int64_t batch = 0, in_channels = 0, out_channels = 0, group = 1;
  std::array<int64_t, 3> in{1, 1, 1}, out{1, 1, 1}, kernel{1, 1, 1};
  std::array<int64_t, 3> stride{1, 1, 1}, dilation{1, 1, 1}, pad_begin{0, 0, 0};
};

// Fills the per-axis attributes of `g` (everything but pad_begin) from the attributes and shapes.
void fill_geometry(const ConvAttrs& attrs, const Shape& x, const Shape& w, const Shape& y,
                   Geometry& g) {
  const size_t n = x.size() - 2;
  const size_t off = 3 - n;  // where the real axes start in the 3-axis arrays
  g.batch = x[0];
  g.in_channels = x[1];
  g.out_channels = y[1];
  g.group = attrs.group;
  for (size_t i = 0; i < n; ++i) {
    g.in[off + i] = x[2 + i];
    g.out[off + i] = y[2 + i];
    g.kernel[off + i] = w[2 + i];
    g.stride[off + i] = attrs.strides[i];
    g.dilation[off + i] = attrs.dilations[i];
  }
}

// The [lo, hi) range of i in [0, count) with 0 <= i * stride + offset < limit.
void valid_range(int64_t count, int64_t stride, int64_t offset, int64_t limit, int64_t& lo,
                 int64_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = limit - 1 - offset < 0 ? 0 : (limit - 1 - offset) / stride + 1;
  lo = std::min(lo, count);
  hi = std::clamp(hi, lo, count);
}

void check_inputs(const KernelContext& ctx, std::span<const Tensor* const> inputs) {
  TANDEM_CHECK(inputs.size() >= 2 && inputs[0] && inputs[1], ErrorCode::kInvalidModel,
               "{}: inputs X and W are required", ctx.node.describe());
  TANDEM_CHECK(inputs[1]->dtype() == inputs[0]->dtype(), ErrorCode::kInvalidModel,
               "{}: W is {} but X is {}", ctx.node.describe(), dtype_name(inputs[1]->dtype()),
               dtype_name(inputs[0]->dtype()));
}

// Initialises an output channel plane with its bias (or zero).
template <typename T>
void init_plane(T* plane, int64_t size, const T* bias, int64_t channel) {
  std::fill(plane, plane + size, bias ? bias[channel] : T(0));
}

// The operands of a Conv or ConvTranspose and its geometry, checked to fit the group: W is
// [out, in / group, k...] for Conv and [in, out / group, k...] for ConvTranspose. The begin pads
// follow the schemas' rules (ops/conv.h), shared with the CPU backend.
struct Operands {
  const Tensor& x;
  const Tensor& w;
  const Tensor* b;
  Tensor& y;
  Geometry g;
};

template <bool kTransposed>
Operands read_operands(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                       std::span<Tensor* const> outputs) {
  check_inputs(ctx, inputs);
  Operands o{*inputs[0], *inputs[1], inputs.size() > 2 ? inputs[2] : nullptr, *outputs[0], {}};
  const Geometry& g = o.g;
  const ConvAttrs attrs = read_conv_attrs(ctx.node, o.x.shape(), o.w.shape());
  fill_geometry(attrs, o.x.shape(), o.w.shape(), o.y.shape(), o.g);
  const bool fits = kTransposed
                        ? g.in_channels == o.w.dim(0) && g.out_channels == o.w.dim(1) * g.group
                        : g.in_channels == o.w.dim(1) * g.group && g.out_channels % g.group == 0;
  TANDEM_CHECK(fits, ErrorCode::kInvalidModel, "{}: X shape {} and W shape {} do not fit group {}",
               ctx.node.describe(), shape_str(o.x.shape()), shape_str(o.w.shape()), g.group);
  std::vector<int64_t> begins, ends;
  if constexpr (kTransposed)
    begins = conv_transpose_pad_begins(ctx.node, attrs, o.x.shape(), o.y.shape());
  else
    conv_pads(attrs, o.x.shape(), o.y.shape(), begins, ends);
  const size_t off = 3 - begins.size();  // where the real axes start in the 3-axis arrays
  for (size_t i = 0; i < begins.size(); ++i) o.g.pad_begin[off + i] = begins[i];
  return o;
}

// Conv and ConvTranspose: one loop nest. Each job owns one output plane (batch, output channel),
// starts it at its bias and, for every input channel of its group and every kernel tap, walks
// the positions p of one side (Conv: output, ConvTranspose: input) whose partner
// q = p * stride + tap * dilation - pad lands inside the other side. Conv gathers (output p
// takes input q); ConvTranspose scatters (input p adds into output q), which stays race-free
// because the job owns the plane it scatters into.
template <bool kTransposed>
void conv_loops(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                std::span<Tensor* const> outputs) {
  const Operands o = read_operands<kTransposed>(ctx, inputs, outputs);
  const Geometry& g = o.g;
  const Tensor& x = o.x;
  const Tensor& w = o.w;
  const Tensor* b = o.b;
  Tensor& y = o.y;
  const int64_t in_ch_per_group = g.in_channels / g.group;
  const int64_t out_ch_per_group = g.out_channels / g.group;
  const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
  const int64_t out_plane = g.out[0] * g.out[1] * g.out[2];
  const int64_t taps = g.kernel[0] * g.kernel[1] * g.kernel[2];
  // The walked side and the side it lands in.
  const std::array<int64_t, 3>& walk = kTransposed ? g.in : g.out;
  const std::array<int64_t, 3>& land = kTransposed ? g.out : g.in;

  dispatch_float(x.dtype(), ctx.node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    const T* wd = w.data<T>();
    const T* bd = b ? b->data<T>() : nullptr;
    T* yd = y.data<T>();
    ctx.pool.parallel_for(g.batch * g.out_channels, [&](int64_t begin, int64_t end) {
      for (int64_t job = begin; job < end; ++job) {
        const int64_t nb = job / g.out_channels, oc = job % g.out_channels;
        const int64_t grp = oc / out_ch_per_group, ocg = oc % out_ch_per_group;
        T* out = yd + job * out_plane;
        init_plane(out, out_plane, bd, oc);
        for (int64_t icg = 0; icg < in_ch_per_group; ++icg) {
          const int64_t ic = grp * in_ch_per_group + icg;
          const T* in = xd + (nb * g.in_channels + ic) * in_plane;
          // W is [out, in / group, taps] for Conv and [in, out / group, taps] for ConvTranspose.
          const T* wk =
              wd + (kTransposed ? ic * out_ch_per_group + ocg : oc * in_ch_per_group + icg) * taps;
          for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
            const int64_t d_off = kd * g.dilation[0] - g.pad_begin[0];
            int64_t pd_lo, pd_hi;
            valid_range(walk[0], g.stride[0], d_off, land[0], pd_lo, pd_hi);
            for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
              const int64_t h_off = kh * g.dilation[1] - g.pad_begin[1];
              int64_t ph_lo, ph_hi;
              valid_range(walk[1], g.stride[1], h_off, land[1], ph_lo, ph_hi);
              for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
                const int64_t w_off = kw * g.dilation[2] - g.pad_begin[2];
                int64_t pw_lo, pw_hi;
                valid_range(walk[2], g.stride[2], w_off, land[2], pw_lo, pw_hi);
                const T wv = wk[(kd * g.kernel[1] + kh) * g.kernel[2] + kw];
                for (int64_t pd = pd_lo; pd < pd_hi; ++pd) {
                  const int64_t qd = pd * g.stride[0] + d_off;
                  for (int64_t ph = ph_lo; ph < ph_hi; ++ph) {
                    const int64_t qh = ph * g.stride[1] + h_off;
                    const int64_t p_row = (pd * walk[1] + ph) * walk[2];
                    const int64_t q_row = (qd * land[1] + qh) * land[2];
                    const int64_t sw = g.stride[2];
                    if constexpr (kTransposed) {
                      T* orow = out + q_row;
                      const T* irow = in + p_row;
                      for (int64_t iw = pw_lo; iw < pw_hi; ++iw)
                        orow[iw * sw + w_off] += wv * irow[iw];
                    } else {
                      T* orow = out + p_row;
                      const T* irow = in + q_row;
                      if (sw == 1) {  // the common case, kept simple for the vectoriser
                        for (int64_t ow = pw_lo; ow < pw_hi; ++ow)
                          orow[ow] += wv * irow[ow + w_off];
                      } else {
                        for (int64_t ow = pw_lo; ow < pw_hi; ++ow)
                          orow[ow] += wv * irow[ow * sw + w_off];
                      }
                    }
                  }
                }
              }
            }
          }
        }
      }
    });
  });
}

void conv(const KernelContext& ctx, std::span<const Tensor* const> inputs,
          std::span<Tensor* const> outputs) {
  conv_loops<false>(ctx, inputs, outputs);
}

void conv_transpose(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                    std::span<Tensor* const> outputs) {
  conv_loops<true>(ctx, inputs, outputs);
}

// FusedConv: Y = act(Conv(X, W, B) + Z), Z broadcasting like Add's operands; with
// channels_last, X, Z and Y are NHWC.
void fused_conv(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  check_inputs(ctx, inputs);
  const FusedActivation act = read_fused_activation(node);
  const Tensor* z = inputs.size() > 3 ? inputs[3] : nullptr;
  Tensor& y = *outputs[0];
  // With channels_last, X is turned to NCHW for the conv and its result back to NHWC.
  const bool channels_last = is_channels_last(node);
  const Tensor* x = inputs[0];
  Tensor x_nchw;
  if (channels_last) {
    TANDEM_CHECK(x->rank() == 4, ErrorCode::kInvalidModel,
                 "{}: channels_last needs a 2-D conv (X of rank 4), X is {}", node.describe(),
                 shape_str(x->shape()));
    x_nchw = Tensor(x->dtype(), nhwc_to_nchw(x->shape()));
    copy_to_channels_first(ctx, *x, x_nchw);
    x = &x_nchw;
  }
  const Shape nchw_shape = conv_output_shape(node, x->shape(), inputs[1]->shape());
  const Shape conv_shape = channels_last ? nchw_to_nhwc(nchw_shape) : nchw_shape;
  // The conv runs straight into Y when Y is its output as it stands, and is not Z's bytes (the
  // CPU kernel's in-place form hands such calls over: Z must be read before Y is written).
  const bool direct = !channels_last && conv_shape == y.shape() &&
                      !(inputs.size() > 3 && inputs[3] && inputs[3]->raw() == y.raw());
  Tensor nchw_out, nhwc_out;
  Tensor* c = direct ? &y : &(nchw_out = Tensor(y.dtype(), nchw_shape));
  std::vector<const Tensor*> conv_in(inputs.begin(),
                                     inputs.begin() + std::min<size_t>(inputs.size(), 3));
  conv_in[0] = x;
  Tensor* conv_out[] = {c};
  conv(ctx, conv_in, conv_out);
  if (channels_last) {
    nhwc_out = Tensor(y.dtype(), conv_shape);
    copy_to_channels_last(ctx, nchw_out, nhwc_out);
    c = &nhwc_out;
  }
  if (z) {
    TANDEM_CHECK(z->dtype() == y.dtype(), ErrorCode::kInvalidModel, "{}: Z is {} but Y is {}",
                 node.describe(), dtype_name(z->dtype()), dtype_name(y.dtype()));
    TANDEM_CHECK(broadcast_shapes(conv_shape, z->shape(), node) == y.shape(),
                 ErrorCode::kInvalidModel, "{}: Conv output {} and Z {} do not broadcast to Y {}",
                 node.describe(), shape_str(conv_shape), shape_str(z->shape()),
                 shape_str(y.shape()));
  }
  dispatch_float(y.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    T* yd = y.data<T>();
    if (!z && c == &y) {
      for (int64_t i = 0; i < y.numel(); ++i) yd[i] = apply_activation(act, yd[i]);
      return;
    }
    // Y[i] = act(C[i'] + Z[i'']) with broadcast indices, walked with an odometer over Y.
    const T* cd = c->data<T>();
    const T* zd = z ? z->data<T>() : nullptr;
    const Shape& ys = y.shape();
    const std::vector<int64_t> cs = broadcast_strides(conv_shape, ys);
    const std::vector<int64_t> zs = z ? broadcast_strides(z->shape(), ys) : cs;
    std::vector<int64_t> idx(ys.size(), 0);
    int64_t ci = 0, zi = 0;
    for (int64_t i = 0; i < y.numel(); ++i) {
      const T v = cd[ci] + (zd ? zd[zi] : T(0));
      yd[i] = apply_activation(act, v);
      for (size_t d = ys.size(); d-- > 0;) {
        ci += cs[d];
        zi += zs[d];
        if (++idx[d] < ys[d]) break;
        ci -= cs[d] * ys[d];
        zi -= zs[d] * ys[d];
        idx[d] = 0;
      }
    }
  });
}

}  // namespace

void register_conv_ref_kernels(KernelRegistry& r) {
  r.add("Conv", conv);
  r.add("ConvTranspose", conv_transpose);
  r.add("FusedConv", fused_conv, kFusedDomain);
}

}  // namespace tandem

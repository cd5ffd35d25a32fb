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

// Fills the per-axis attributes of `g` (everything but pad_begin) from the node and shapes.
void fill_geometry(const Node& node, const Shape& x, const Shape& w, const Shape& y, Geometry& g) {
  const size_t n = x.size() - 2;
  const size_t off = 3 - n;  // where the real axes start in the 3-axis arrays
  g.batch = x[0];
  g.in_channels = x[1];
  g.out_channels = y[1];
  g.group = node.attr_int_or("group", 1);
  std::vector<int64_t> strides = node.attr_ints_or("strides", std::vector<int64_t>(n, 1));
  std::vector<int64_t> dilations = node.attr_ints_or("dilations", std::vector<int64_t>(n, 1));
  for (size_t i = 0; i < n; ++i) {
    g.in[off + i] = x[2 + i];
    g.out[off + i] = y[2 + i];
    g.kernel[off + i] = w[2 + i];
    g.stride[off + i] = strides[i];
    g.dilation[off + i] = dilations[i];
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

void conv(const KernelContext& ctx, std::span<const Tensor* const> inputs,
          std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  check_inputs(ctx, inputs);
  const Tensor& x = *inputs[0];
  const Tensor& w = *inputs[1];
  const Tensor* b = inputs.size() > 2 ? inputs[2] : nullptr;
  Tensor& y = *outputs[0];
  Geometry g;
  fill_geometry(node, x.shape(), w.shape(), y.shape(), g);
  TANDEM_CHECK(g.in_channels == w.dim(1) * g.group && g.out_channels % g.group == 0,
               ErrorCode::kInvalidModel, "{}: X shape {} and W shape {} do not fit group {}",
               node.describe(), shape_str(x.shape()), shape_str(w.shape()), g.group);

  // Begin pads: explicit, none (VALID), or split from the total SAME padding.
  const size_t n = x.rank() - 2, off = 3 - n;
  const std::string auto_pad = node.attr_string_or("auto_pad", "NOTSET");
  std::vector<int64_t> pads = node.attr_ints_or("pads", std::vector<int64_t>(2 * n, 0));
  for (size_t i = 0; i < n; ++i) {
    const size_t a = off + i;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      const int64_t k_eff = (g.kernel[a] - 1) * g.dilation[a] + 1;
      const int64_t total = std::max<int64_t>(0, (g.out[a] - 1) * g.stride[a] + k_eff - g.in[a]);
      g.pad_begin[a] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
    } else if (auto_pad == "NOTSET") {
      g.pad_begin[a] = pads[i];
    }
  }

  const int64_t in_ch_per_group = g.in_channels / g.group;
  const int64_t out_ch_per_group = g.out_channels / g.group;
  const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
  const int64_t out_plane = g.out[0] * g.out[1] * g.out[2];
  const int64_t taps = g.kernel[0] * g.kernel[1] * g.kernel[2];

  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    const T* wd = w.data<T>();
    const T* bd = b ? b->data<T>() : nullptr;
    T* yd = y.data<T>();
    ctx.pool.parallel_for(g.batch * g.out_channels, [&](int64_t begin, int64_t end) {
      for (int64_t job = begin; job < end; ++job) {
        const int64_t nb = job / g.out_channels, oc = job % g.out_channels;
        const int64_t grp = oc / out_ch_per_group;
        T* out = yd + job * out_plane;
        init_plane(out, out_plane, bd, oc);
        for (int64_t icg = 0; icg < in_ch_per_group; ++icg) {
          const int64_t ic = grp * in_ch_per_group + icg;
          const T* in = xd + (nb * g.in_channels + ic) * in_plane;
          const T* wk = wd + (oc * in_ch_per_group + icg) * taps;
          for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
            const int64_t d_off = kd * g.dilation[0] - g.pad_begin[0];
            int64_t od_lo, od_hi;
            valid_range(g.out[0], g.stride[0], d_off, g.in[0], od_lo, od_hi);
            for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
              const int64_t h_off = kh * g.dilation[1] - g.pad_begin[1];
              int64_t oh_lo, oh_hi;
              valid_range(g.out[1], g.stride[1], h_off, g.in[1], oh_lo, oh_hi);
              for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
                const int64_t w_off = kw * g.dilation[2] - g.pad_begin[2];
                int64_t ow_lo, ow_hi;
                valid_range(g.out[2], g.stride[2], w_off, g.in[2], ow_lo, ow_hi);
                const T wv = wk[(kd * g.kernel[1] + kh) * g.kernel[2] + kw];
                const int64_t sw = g.stride[2];
                for (int64_t od = od_lo; od < od_hi; ++od) {
                  const int64_t id = od * g.stride[0] + d_off;
                  for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
                    const int64_t ih = oh * g.stride[1] + h_off;
                    T* orow = out + (od * g.out[1] + oh) * g.out[2];
                    const T* irow = in + (id * g.in[1] + ih) * g.in[2];
                    if (sw == 1) {  // the common case, kept simple for the vectoriser
                      for (int64_t ow = ow_lo; ow < ow_hi; ++ow) orow[ow] += wv * irow[ow + w_off];
                    } else {
                      for (int64_t ow = ow_lo; ow < ow_hi; ++ow)
                        orow[ow] += wv * irow[ow * sw + w_off];
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

void conv_transpose(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                    std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  check_inputs(ctx, inputs);
  const Tensor& x = *inputs[0];
  const Tensor& w = *inputs[1];
  const Tensor* b = inputs.size() > 2 ? inputs[2] : nullptr;
  Tensor& y = *outputs[0];
  Geometry g;
  fill_geometry(node, x.shape(), w.shape(), y.shape(), g);
  TANDEM_CHECK(g.in_channels == w.dim(0) && g.out_channels == w.dim(1) * g.group,
               ErrorCode::kInvalidModel, "{}: X shape {} and W shape {} do not fit group {}",
               node.describe(), shape_str(x.shape()), shape_str(w.shape()), g.group);

  // Begin pads: explicit, or split from the total padding implied by the output size when the
  // size is given (output_shape) or derived (SAME_*); the rule is shared with the CPU backend.
  const size_t n = x.rank() - 2, off = 3 - n;
  const std::vector<int64_t> begins = conv_transpose_pad_begins(
      node, read_conv_attrs(node, x.shape(), w.shape()), x.shape(), y.shape());
  for (size_t i = 0; i < n; ++i) g.pad_begin[off + i] = begins[i];

  const int64_t in_ch_per_group = g.in_channels / g.group;
  const int64_t out_ch_per_group = g.out_channels / g.group;
  const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
  const int64_t out_plane = g.out[0] * g.out[1] * g.out[2];
  const int64_t taps = g.kernel[0] * g.kernel[1] * g.kernel[2];

  dispatch_float(x.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    const T* xd = x.data<T>();
    const T* wd = w.data<T>();
    const T* bd = b ? b->data<T>() : nullptr;
    T* yd = y.data<T>();
    // Each job owns one output plane and gathers the scatter of every input channel of its
    // group into it: input position i with tap k lands on output i * stride + k * dilation - pad.
    ctx.pool.parallel_for(g.batch * g.out_channels, [&](int64_t begin, int64_t end) {
      for (int64_t job = begin; job < end; ++job) {
        const int64_t nb = job / g.out_channels, oc = job % g.out_channels;
        const int64_t grp = oc / out_ch_per_group, ocg = oc % out_ch_per_group;
        T* out = yd + job * out_plane;
        init_plane(out, out_plane, bd, oc);
        for (int64_t icg = 0; icg < in_ch_per_group; ++icg) {
          const int64_t ic = grp * in_ch_per_group + icg;
          const T* in = xd + (nb * g.in_channels + ic) * in_plane;
          const T* wk = wd + (ic * out_ch_per_group + ocg) * taps;
          for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
            const int64_t d_off = kd * g.dilation[0] - g.pad_begin[0];
            int64_t id_lo, id_hi;
            valid_range(g.in[0], g.stride[0], d_off, g.out[0], id_lo, id_hi);
            for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
              const int64_t h_off = kh * g.dilation[1] - g.pad_begin[1];
              int64_t ih_lo, ih_hi;
              valid_range(g.in[1], g.stride[1], h_off, g.out[1], ih_lo, ih_hi);
              for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
                const int64_t w_off = kw * g.dilation[2] - g.pad_begin[2];
                int64_t iw_lo, iw_hi;
                valid_range(g.in[2], g.stride[2], w_off, g.out[2], iw_lo, iw_hi);
                const T wv = wk[(kd * g.kernel[1] + kh) * g.kernel[2] + kw];
                const int64_t sw = g.stride[2];
                for (int64_t id = id_lo; id < id_hi; ++id) {
                  const int64_t od = id * g.stride[0] + d_off;
                  for (int64_t ih = ih_lo; ih < ih_hi; ++ih) {
                    const int64_t oh = ih * g.stride[1] + h_off;
                    T* orow = out + (od * g.out[1] + oh) * g.out[2];
                    const T* irow = in + (id * g.in[1] + ih) * g.in[2];
                    for (int64_t iw = iw_lo; iw < iw_hi; ++iw)
                      orow[iw * sw + w_off] += wv * irow[iw];
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
  // The conv runs straight into Y when Y is its output as it stands.
  const bool direct = !channels_last && conv_shape == y.shape();
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

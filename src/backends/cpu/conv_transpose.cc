// The CPU backend's ConvTranspose: oneDNN's deconvolution_forward for 2-D float32 transposed
// convolutions (groups, depthwise, strides, dilations, explicit pads, auto_pad, output_shape,
// optional bias).
//
// Like Conv (conv.cc), the kernel keeps, per (X shape, W shape, bias, Y shape, thread count)
// seen, a prepared primitive: oneDNN chooses its internal layouts (format_tag::any), the node's
// NCHW tensors are reordered to and from them, and a constant W is reordered into the
// primitive's layout once. ONNX's W is [C_in, C_out / group, kH, kW]; oneDNN's deconvolution
// weights are {OC, IC, KH, KW} (grouped: {G, OC/G, IC/G, KH, KW}), so ONNX's W is described with
// those dims and the strides of its own layout (iohw / giohw).
//
// The pads follow the reference kernel's rule (explicit pads, or the total implied by the output
// size split by auto_pad). oneDNN's output size is (in - 1) * stride + k_eff - pad_l - pad_r, so
// pad_r comes from Y's size; when that makes it negative (output_padding or output_shape asking
// for more than the input covers), the reference kernel runs it. So do 1-D/3-D, other dtypes,
// empty tensors and anything oneDNN cannot build.
#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "core/error.h"
#include "ops/conv.h"
#include "ops/schema.h"

namespace tandem::cpu {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

struct DeconvPlan {
  dnnl::deconvolution_forward::primitive_desc pd;
  dnnl::deconvolution_forward deconv;
  std::optional<dnnl::reorder> x_reorder, y_reorder;
  memory x_mem, y_mem;  // buffers in the primitive's layouts, when they differ
  PackedWeights w;
  memory x_user, b_user, y_user;
  std::unordered_map<int, memory> args;
};

// X shape, W shape, Y shape, bias, thread count.
using PlanKey = std::array<int64_t, 14>;

class ConvTransposeKernel : public DnnlKernel<PlanKey, DeconvPlan> {
 public:
  explicit ConvTransposeKernel(const Node& node)
      : DnnlKernel(node, "deconvolution"),
        constant_w_(node.has_input(1) && node.inputs[1]->is_constant()),
        w_value_(constant_w_ ? node.inputs[1] : nullptr) {}

 private:
  bool applies(const Call& c) const override {
    const Tensor *x = c.in(0), *w = c.in(1), *b = c.in(2), *y = c.out(0);
    if (!x || !w || !y) return false;
    if (x->dtype() != DataType::kFloat32 || w->dtype() != DataType::kFloat32 ||
        y->dtype() != DataType::kFloat32)
      return false;
    if (b && (b->dtype() != DataType::kFloat32 || b->rank() != 1)) return false;
    if (x->rank() != 4 || w->rank() != 4 || y->rank() != 4) return false;
    return x->numel() > 0 && w->numel() > 0 && y->numel() > 0;
  }

  int threads(const Call& c) const override {
    const Tensor &x = *c.in(0), &w = *c.in(1);
    const int64_t macs = x.numel() * w.dim(1) * w.dim(2) * w.dim(3);
    return threads_for(c.ctx, static_cast<double>(macs) / 8);
  }

  PlanKey key(const Call& c, int threads) const override {
    PlanKey key{};
    std::copy(c.in(0)->shape().begin(), c.in(0)->shape().end(), key.begin());
    std::copy(c.in(1)->shape().begin(), c.in(1)->shape().end(), key.begin() + 4);
    std::copy(c.out(0)->shape().begin(), c.out(0)->shape().end(), key.begin() + 8);
    key[12] = c.in(2) != nullptr;
    key[13] = threads;
    return key;
  }

  std::optional<DeconvPlan> make_plan(const Call& c) const override {
    return make_plan(c.node(), c.in(0)->shape(), c.in(1)->shape(), c.in(2) != nullptr,
                     c.out(0)->shape());
  }

  void run(const Call& c, DeconvPlan& p) override {
    const Tensor *x = c.in(0), *w = c.in(1), *b = c.in(2);
    dnnl::stream& s = stream();
    p.x_user.set_data_handle(const_cast<float*>(x->data<float>()));
    p.y_user.set_data_handle(c.out(0)->data<float>());
    if (b) p.b_user.set_data_handle(const_cast<float*>(b->data<float>()));
    if (p.x_reorder) p.x_reorder->execute(s, p.x_user, p.x_mem);
    p.w.prepare(s, w->data<float>(), constant_w_);
    p.deconv.execute(s, p.args);
    if (p.y_reorder) p.y_reorder->execute(s, p.y_mem, p.y_user);
    s.wait();
  }

  // std::nullopt where the reference kernel computes it.
  std::optional<DeconvPlan> make_plan(const Node& node, const Shape& xs, const Shape& ws,
                                      bool has_bias, const Shape& ys) const {
    const ConvAttrs a = read_conv_attrs(node, xs, ws);
    DeconvPlan p;
    const int64_t g = a.group;
    if (xs[1] != ws[0] || ws[0] % g != 0 || ys[0] != xs[0] || ys[1] != ws[1] * g)
      return std::nullopt;  // the reference kernel reports the mismatch
    const std::vector<int64_t> begin = conv_transpose_pad_begins(node, a, xs, ys);
    memory::dims strides(a.strides.begin(), a.strides.end()), dilations, pad_l, pad_r;
    for (size_t i = 0; i < 2; ++i) {
      const int64_t k_eff = (a.kernel[i] - 1) * a.dilations[i] + 1;
      const int64_t right = (xs[i + 2] - 1) * a.strides[i] + k_eff - begin[i] - ys[i + 2];
      if (right < 0 || begin[i] < 0) return std::nullopt;  // beyond what oneDNN produces
      dilations.push_back(a.dilations[i] - 1);             // oneDNN counts the gaps
      pad_l.push_back(begin[i]);
      pad_r.push_back(right);
    }
    const int64_t icg = ws[0] / g, ocg = ws[1], kh = ws[2], kw = ws[3];
    const memory::desc x_md(to_dims(xs), Dt::f32, Tag::nchw);
    const memory::desc y_md(to_dims(ys), Dt::f32, Tag::nchw);
    memory::desc b_md;
    if (has_bias) b_md = memory::desc({ocg * g}, Dt::f32, Tag::x);
    // ONNX's W: [G][IC/G][OC/G][KH][KW] in memory.
    memory::desc w_md =
        g == 1
            ? memory::desc({ocg, icg, kh, kw}, Dt::f32, memory::dims{kh * kw, ocg * kh * kw, kw, 1})
            : memory::desc({g, ocg, icg, kh, kw}, Dt::f32,
                           memory::dims{icg * ocg * kh * kw, kh * kw, ocg * kh * kw, kw, 1});
    memory::desc x_any(to_dims(xs), Dt::f32, Tag::any);
    memory::desc y_any(to_dims(ys), Dt::f32, Tag::any);
    memory::desc w_any(w_md.dims(), Dt::f32, Tag::any);
    const auto prop = dnnl::prop_kind::forward_inference;
    const auto alg = dnnl::algorithm::deconvolution_direct;
    auto desc = has_bias ? dnnl::deconvolution_forward::desc(prop, alg, x_any, w_any, b_md, y_any,
                                                             strides, dilations, pad_l, pad_r)
                         : dnnl::deconvolution_forward::desc(prop, alg, x_any, w_any, y_any,
                                                             strides, dilations, pad_l, pad_r);
    p.pd = dnnl::deconvolution_forward::primitive_desc(desc, user_scratchpad(), engine());
    p.deconv = dnnl::deconvolution_forward(p.pd);
    if (p.pd.src_desc() != x_md) {
      p.x_mem = memory(p.pd.src_desc(), engine());
      p.x_reorder = make_reorder(x_md, p.pd.src_desc());
    }
    if (p.pd.dst_desc() != y_md) {
      p.y_mem = memory(p.pd.dst_desc(), engine());
      p.y_reorder = make_reorder(p.pd.dst_desc(), y_md);
    }
    p.w = PackedWeights(w_md, p.pd.weights_desc(), w_value_);
    p.x_user = memory(x_md, engine(), nullptr);
    p.y_user = memory(y_md, engine(), nullptr);
    p.args = {{DNNL_ARG_SRC, p.x_reorder ? p.x_mem : p.x_user},
              {DNNL_ARG_WEIGHTS, p.w.arg()},
              {DNNL_ARG_DST, p.y_reorder ? p.y_mem : p.y_user}};
    if (has_bias) {
      p.b_user = memory(b_md, engine(), nullptr);
      p.args[DNNL_ARG_BIAS] = p.b_user;
    }
    add_scratchpad(p.args, make_scratchpad(p.pd.scratchpad_desc()));
    return p;
  }

  bool constant_w_;
  const Value* w_value_;  // W when it is a constant (its prepacked layouts)
};

// Declines (nullptr -> the reference backend) what the graph already shows is not 2-D float32.
std::unique_ptr<Kernel> make_conv_transpose(const Node& node) {
  if (!node.has_input(0) || !node.has_input(1)) return nullptr;
  const Value* x = node.inputs[0];
  if (known_not_float32(x)) return nullptr;
  if (x->shape_known && x->shape.size() != 4) return nullptr;
  return std::make_unique<ConvTransposeKernel>(node);
}

}  // namespace

void register_conv_transpose_kernels(KernelRegistry& r) {
  r.add("ConvTranspose", make_conv_transpose);
}

}  // namespace tandem::cpu

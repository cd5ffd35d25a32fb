// The CPU backend's Conv: oneDNN's convolution_forward for 2-D float32 convolutions (groups,
// depthwise, strides, dilations, explicit pads and auto_pad, optional bias), and FusedConv
// (kFusedDomain): the same convolution with oneDNN post-ops, Z added by a sum post-op when it has
// Y's shape (Z is copied into the destination first) or a binary add post-op when it broadcasts,
// then the activation as eltwise post-ops. 3x3 convs with large enough images are computed by
// oneDNN's Winograd kernels where the CPU has them (worth_winograd), the rest directly.
//
// The kernel is created once per node and keeps, per (X shape, W shape, bias, Z shape) seen, a
// prepared primitive: the primitive descriptor with oneDNN free to choose its internal layouts
// (format_tag::any), the primitive itself, the layout changes between the node's tensors (NCHW,
// or NHWC for a channels_last FusedConv) and those layouts, the intermediate buffers, and the
// oneDNN memories and arguments, re-pointed at each call's buffers. When W is a constant of the
// model, it is reordered into the primitive's preferred layout once (prepacked) and kept. On
// AVX-512 oneDNN 2.6 picks NHWC for every conv of the committed models: the channels_last pass
// (optimizer/channels_last.cc) lets chains of convs skip the layout changes.
//
// Anything else (1-D/3-D convs, other dtypes, empty tensors, a Z that broadcasts Y beyond the
// conv's output, a primitive oneDNN cannot build) runs on the reference kernel, which the node
// holds: a node declined in the factory goes to the reference backend; one accepted but fed
// unsupported tensors at run time delegates per call.
#include "ops/conv.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "backends/cpu/transpose.h"
#include "core/error.h"
#include "ops/fused_activation.h"
#include "ops/layout.h"
#include "ops/schema.h"

namespace tandem::cpu {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using Dt = memory::data_type;

// The eltwise post-ops computing `act`, in order; false when oneDNN has no exact equivalent.
bool activation_post_ops(const FusedActivation& act, dnnl::post_ops& ops) {
  using Alg = dnnl::algorithm;
  switch (act.kind) {
    case ActivationKind::kNone:
      return true;
    case ActivationKind::kRelu:
      ops.append_eltwise(1.0f, Alg::eltwise_relu, 0.0f, 0.0f);
      return true;
    case ActivationKind::kLeakyRelu:
      ops.append_eltwise(1.0f, Alg::eltwise_relu, act.alpha, 0.0f);
      return true;
    case ActivationKind::kClip:
      // oneDNN's max(lo, min(hi, x)) differs from ONNX's min(hi, max(lo, x)) when lo > hi.
      if (std::isnan(act.alpha) || std::isnan(act.beta) || act.alpha > act.beta) return false;
      ops.append_eltwise(1.0f, Alg::eltwise_clip, act.alpha, act.beta);
      return true;
    case ActivationKind::kSigmoid:
      ops.append_eltwise(1.0f, Alg::eltwise_logistic, 0.0f, 0.0f);
      return true;
    case ActivationKind::kHardSigmoid:  // no hardsigmoid in oneDNN 2.6: clip(alpha x + beta)
      ops.append_eltwise(1.0f, Alg::eltwise_linear, act.alpha, act.beta);
      ops.append_eltwise(1.0f, Alg::eltwise_clip, 0.0f, 1.0f);
      return true;
    case ActivationKind::kHardSwish:  // x * min(max(x + 3, 0), 6) / 6, ONNX's definition
      ops.append_eltwise(1.0f, Alg::eltwise_hardswish, 0.0f, 0.0f);
      return true;
    case ActivationKind::kTanh:
      ops.append_eltwise(1.0f, Alg::eltwise_tanh, 0.0f, 0.0f);
      return true;
    case ActivationKind::kSiLU:  // swish: x * sigmoid(alpha x)
      ops.append_eltwise(1.0f, Alg::eltwise_swish, 1.0f, 0.0f);
      return true;
  }
  return false;
}

// One prepared convolution for one set of input shapes.
struct ConvPlan {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward conv;
  memory::desc x_md, w_md, b_md, y_md;  // the layouts of the node's tensors (NCHW or NHWC)
  // Set when the primitive's layout differs from the node's.
  std::optional<dnnl::reorder> x_reorder, y_reorder;
  std::optional<dnnl::reorder> y_reorder_in;  // Z into the destination's layout (FusedConv)
  // Set instead of the reorders when the primitive's layout is the other plain one (NCHW vs
  // NHWC): the SSE transposes of cpu/transpose.h beat oneDNN's reorder there. Per batch item, the
  // node's X is a x_rows x x_cols matrix; the primitive's Y a y_rows x y_cols one.
  bool x_transpose = false, y_transpose = false;
  int64_t batch = 0, x_rows = 0, x_cols = 0, y_rows = 0, y_cols = 0;
  memory x_mem, y_mem;  // buffers in the primitive's layouts, when they differ
  PackedWeights w;
  // A conv of 1x1 X by a 1x1 kernel (the squeeze-and-excite convs on [N, C, 1, 1]) is a dense
  // layer: computed here (dense_conv), with the constant W transposed to [C, M] once.
  bool dense = false;
  std::vector<float> wt;
  // The node's tensors as oneDNN memories, pointed at each call's buffers, and the primitive's
  // arguments built from them once.
  memory x_user, b_user, y_user, z_user;
  // How Z is added: none, a sum post-op (Z of Y's shape, copied into the destination first), or
  // a binary add post-op reading Z where it broadcasts (per channel, per row, ...).
  enum class ZMode { kNone, kSum, kBinary } z_mode = ZMode::kNone;
  std::unordered_map<int, memory> args;
  // The primitive computes by Winograd's minimal filtering (worth_winograd), not directly.
  bool winograd = false;
  // > 1: the primitive is built for one batch item and run once per item. Done when Z varies
  // per item but broadcasts within one (the UNet's time embedding, [N, C, 1, 1]): oneDNN's
  // direct convolutions take no such binary post-op for a batch over 1 and fall back to a gemm
  // convolution in plain layout, 24 times slower on sd_unet_tiny at batch 2.
  int64_t items = 1;
  // When Z is one value per output channel, for all items or per item (the time embedding): the
  // plan has a bias and no Z, and each run's bias is B + Z[item] (item_bias). A bias costs
  // nothing in oneDNN's kernels, unlike a binary post-op, which Winograd also lacks.
  bool z_as_bias = false;
  std::vector<float> item_bias;
};

// The plan key: X and W shapes, whether B is given, when Z is, Y's and Z's shapes (Z may
// broadcast; Z's rank, then its dims), and the thread count (a oneDNN conv keeps the one it was
// created with).
using PlanKey = std::array<int64_t, 20>;

// out[0, m) += sum_j in[j] * wt[j * m + i]: one row of W transposed per input channel. Built for
// AVX-512 and AVX2 too (the binary's baseline is SSE2); the loader picks the best the CPU has.
#if defined(__x86_64__) && defined(__GNUC__)
#define TANDEM_X86_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TANDEM_X86_CLONES
#endif
TANDEM_X86_CLONES void saxpy_rows(const float* wt, const float* in, float* out, int64_t c,
                                  int64_t m) {
  for (int64_t j = 0; j < c; ++j) {
    const float v = in[j];
    const float* row = wt + j * m;
#pragma omp simd  // -O2 would not vectorise it (unknown trip count, possible aliasing)
    for (int64_t i = 0; i < m; ++i) out[i] += v * row[i];
  }
}

std::atomic<int64_t> winograd_plan_count{0};

// TANDEM_CONV_WINOGRAD=0 turns Winograd convolutions off (direct only, as before they existed).
bool winograd_allowed() {
  static const bool allowed = [] {
    const char* env = std::getenv("TANDEM_CONV_WINOGRAD");
    return !(env && env[0] == '0' && env[1] == '\0');
  }();
  return allowed;
}

// Whether a 3x3 conv (stride 1, no dilation, no groups, at least 16 channels in and out) is worth
// computing by Winograd's F(2x2 or 4x4, 3x3) (oneDNN's AVX-512 kernels): 2.2 to 4 times fewer
// multiplies, paid for by transforms of the tiles and of W (1.8 or 4 times W's bytes). Measured
// one item at a time at 1 and 2 threads on an AVX-512 core (Zen 5), NHWC reorders in and out
// included: 1.8-2.3x faster than the direct kernel on resnet's 56x56x64 and 28x28x128 convs and
// on the SD UNet's 64x64x320 and 32x32x640 ones. On smaller images the transformed W dominates:
// resnet50's 14x14x256 convs gained nothing inside the model, the UNet's 16x16x1280 ones little.
// The decision depends on one item's geometry only, never on the batch or the thread count (see
// make_plan: such plans run one item at a time). The result differs from the direct one by
// rounding only (about 1e-6 of max |Y|).
bool worth_winograd(const ConvAttrs& a, const Shape& xs, const Shape& ws, const Shape& ys) {
  if (!winograd_allowed() || a.group != 1) return false;
  if (ws[2] != 3 || ws[3] != 3 || xs[1] < 16 || ws[0] < 16) return false;
  for (int64_t s : a.strides)
    if (s != 1) return false;
  for (int64_t d : a.dilations)
    if (d != 1) return false;
  return ys[2] * ys[3] >= 28 * 28;
}

// `want` when it describes the same bytes as the node's plain layout `user`: NCHW and NHWC
// agree when C == 1 or H * W == 1. Saves a reorder between identical buffers (the squeeze-and-
// excite convs on [N, C, 1, 1]).
memory::desc same_bytes_or(const memory::desc& user, const memory::desc& want) {
  const memory::dims d = user.dims();
  if (d.size() != 4 || (d[1] != 1 && d[2] * d[3] != 1)) return user;
  for (Tag t : {Tag::nchw, Tag::nhwc})
    if (want == memory::desc(d, Dt::f32, t)) return want;
  return user;
}

class ConvKernel : public DnnlKernel<PlanKey, ConvPlan> {
 public:
  ConvKernel(const Node& node, const FusedActivation& act)
      : DnnlKernel(node, "convolution"),
        constant_w_(node.has_input(1) && node.inputs[1]->is_constant()),
        w_value_(constant_w_ ? node.inputs[1] : nullptr),
        channels_last_(is_channels_last(node)),
        act_(act) {}

  // A FusedConv writes over its Z (the residual: same dtype and shape as Y) when nothing reads Z
  // later: oneDNN's sum post-op adds what the destination holds, so Y then needs no copy of Z
  // first. Every path reads an element of Z before it writes that element of Y.
  int in_place_input(std::span<const TensorType* const> inputs,
                     const TensorType& output) const override {
    if (inputs.size() < 4 || !inputs[3] || output.dtype != DataType::kFloat32) return -1;
    return inputs[3]->dtype == output.dtype && inputs[3]->shape == output.shape ? 3 : -1;
  }

 private:
  // Whether the oneDNN path handles these tensors: 2-D float32 with data to compute.
  bool applies(const Call& c) const override {
    const Tensor *x = c.in(0), *w = c.in(1), *b = c.in(2), *z = c.in(3), *y = c.out(0);
    if (!x || !w || !y) return false;
    if (x->dtype() != DataType::kFloat32 || w->dtype() != DataType::kFloat32) return false;
    if (b && b->dtype() != DataType::kFloat32) return false;
    if (z && (z->dtype() != DataType::kFloat32 || z->rank() > 4)) return false;
    if (x->rank() != 4 || w->rank() != 4 || y->rank() != 4) return false;
    return x->numel() > 0 && w->numel() > 0 && y->numel() > 0;
  }

  // A small conv runs on fewer threads: waking a thread costs more than its share of the work.
  // A multiply-add counts as a whole unit here (not 1/8 as for matmuls): measured with
  // tools/peer_bench.sh at 2 threads, mobilenet_tiny took 0.071 ms this way against 0.099 ms.
  int threads(const Call& c) const override {
    const Tensor& w = *c.in(1);
    const int64_t macs = c.out(0)->numel() * w.dim(1) * w.dim(2) * w.dim(3);
    return threads_for(c.ctx, static_cast<double>(macs));
  }

  PlanKey key(const Call& c, int threads) const override {
    const Tensor *x = c.in(0), *w = c.in(1), *z = c.in(3);
    const Shape& y_shape = c.out(0)->shape();
    PlanKey key{};
    std::copy(x->shape().begin(), x->shape().end(), key.begin());
    std::copy(w->shape().begin(), w->shape().end(), key.begin() + 4);
    key[8] = c.in(2) != nullptr;
    key[9] = z != nullptr;
    key[19] = threads;
    if (z) {
      std::copy(y_shape.begin(), y_shape.end(), key.begin() + 10);
      key[14] = z->rank();
      std::copy(z->shape().begin(), z->shape().end(), key.begin() + 15);
    }
    return key;
  }

  std::optional<ConvPlan> make_plan(const Call& c) const override {
    // Plans are built on NCHW shapes; channels_last only changes the memory layouts.
    const Tensor* z = c.in(3);
    const Shape& y_shape = c.out(0)->shape();
    Shape xs = c.in(0)->shape(), ys = y_shape;
    if (channels_last_) {
      xs = nhwc_to_nchw(xs);
      ys = nhwc_to_nchw(ys);
    }
    return make_plan(c.node(), xs, c.in(1)->shape(), c.in(2) != nullptr, z ? &z->shape() : nullptr,
                     y_shape, ys);
  }

  void run(const Call& c, ConvPlan& p) override {
    const Tensor *x = c.in(0), *w = c.in(1), *b = c.in(2), *z = c.in(3);
    Tensor* y = c.out(0);
    if (p.dense) {
      dense_conv(p, *x, *w, b, z, *y);
      return;
    }
    // Every tensor's batch dim comes first in both layouts, so an item is a contiguous slice.
    const int64_t n = p.items;
    const int64_t x_item = x->numel() / n, y_item = y->numel() / n;
    // Z's elements per item; for a Z folded into the bias, Y's channels per item of Z, or none
    // when one Z serves every item (make_plan).
    const int64_t channels = static_cast<int64_t>(p.item_bias.size());
    const int64_t z_item = !z ? 0 : !p.z_as_bias ? z->numel() / n : z->dim(0) == 1 ? 0 : channels;
    for (int64_t i = 0; i < n; ++i) {
      const float* bi = b ? b->data<float>() : nullptr;
      const float* zi = z ? z->data<float>() + i * z_item : nullptr;
      if (p.z_as_bias) {
        for (int64_t k = 0; k < channels; ++k) p.item_bias[k] = (bi ? bi[k] : 0.0f) + zi[k];
        bi = p.item_bias.data();
        zi = nullptr;
      }
      run_items(c, p, x->data<float>() + i * x_item, w->data<float>(), bi, zi,
                y->data<float>() + i * y_item, static_cast<size_t>(y_item) * sizeof(float));
    }
  }

  // One run of the primitive: over the whole batch, or over one item when p.items > 1.
  void run_items(const Call& c, ConvPlan& p, const float* x, const float* w, const float* b,
                 const float* z, float* y, size_t y_bytes) {
    dnnl::stream& s = stream();
    p.x_user.set_data_handle(const_cast<float*>(x));
    p.y_user.set_data_handle(y);
    if (b) p.b_user.set_data_handle(const_cast<float*>(b));
    if (z && p.z_mode == ConvPlan::ZMode::kBinary) {
      p.z_user.set_data_handle(const_cast<float*>(z));
    } else if (z) {         // the sum post-op adds what the destination holds
      if (p.y_transpose) {  // the node's layout to the primitive's: the other way round
        transpose_matrices(c.ctx, z, p.y_mem.get_data_handle(), p.batch, p.y_cols, p.y_rows);
      } else if (p.y_reorder) {
        p.z_user.set_data_handle(const_cast<float*>(z));
        p.y_reorder_in->execute(s, p.z_user, p.y_mem);
      } else if (y != z) {  // (Y written over Z already holds it: in_place_input)
        std::memcpy(y, z, y_bytes);
      }
    }
    if (p.x_transpose) {
      transpose_matrices(c.ctx, x, p.x_mem.get_data_handle(), p.batch, p.x_rows, p.x_cols);
    } else if (p.x_reorder) {
      p.x_reorder->execute(s, p.x_user, p.x_mem);
    }
    p.w.prepare(s, w, constant_w_);
    p.conv.execute(s, p.args);
    if (p.y_reorder) p.y_reorder->execute(s, p.y_mem, p.y_user);
    s.wait();
    if (p.y_transpose)
      transpose_matrices(c.ctx, p.y_mem.get_data_handle(), y, p.batch, p.y_rows, p.y_cols);
  }

  // y[n, m] = act(B[m] + sum_c W[m, c] x[n, c] + Z[n, m]) for X [N, C, 1, 1] and W [M, C, 1, 1];
  // the inner loop runs over m on W transposed, so it vectorises.
  void dense_conv(ConvPlan& p, const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* z,
                  Tensor& y) const {
    const int64_t batch = x.dim(0), c = w.dim(1), m = w.dim(0);
    if (p.wt.empty()) {
      p.wt.resize(c * m);
      const float* wd = w.data<float>();
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < c; ++j) p.wt[j * m + i] = wd[i * c + j];
    }
    for (int64_t n = 0; n < batch; ++n) {
      float* out = y.data<float>() + n * m;
      const float* in = x.data<float>() + n * c;
      // Z first: Y may be Z's own bytes (in_place_input), each element read before it is written.
      const float* zd = z ? z->data<float>() + n * m : nullptr;
      const float* bd = b ? b->data<float>() : nullptr;
      for (int64_t i = 0; i < m; ++i) out[i] = (bd ? bd[i] : 0.0f) + (zd ? zd[i] : 0.0f);
      saxpy_rows(p.wt.data(), in, out, c, m);
      if (act_.kind != ActivationKind::kNone)
        for (int64_t i = 0; i < m; ++i) out[i] = apply_activation(act_, out[i]);
    }
  }

  // xs, ws, ys: NCHW shapes. zs: Z's shape when given, in the node's layout, like y_node (Y's).
  // std::nullopt where the reference kernel computes it.
  std::optional<ConvPlan> make_plan(const Node& node, const Shape& xs, const Shape& ws,
                                    bool has_bias, const Shape* zs, const Shape& y_node,
                                    const Shape& ys) const {
    // The schema's parsing and checks, and its pad rule; the shapes come from its inference.
    const ConvAttrs a = read_conv_attrs(node, xs, ws);
    const bool has_z = zs != nullptr;
    if (has_z && conv_output_shape(node, xs, ws) != ys)
      return std::nullopt;  // Z broadcast Y beyond the conv's output: the reference kernel does
                            // that
    TANDEM_CHECK(
        xs[1] == ws[1] * a.group && ws[0] % a.group == 0 && ys[0] == xs[0] && ys[1] == ws[0],
        ErrorCode::kInvalidModel, "{}: X {}, W {} and Y {} do not fit group {}", node.describe(),
        shape_str(xs), shape_str(ws), shape_str(ys), a.group);
    std::vector<int64_t> pad_begin, pad_end;
    conv_pads(a, xs, ys, pad_begin, pad_end);
    memory::dims strides(a.strides.begin(), a.strides.end());
    memory::dims dilations, pad_l(pad_begin.begin(), pad_begin.end()),
        pad_r(pad_end.begin(), pad_end.end());
    for (int64_t d : a.dilations) dilations.push_back(d - 1);  // oneDNN counts the gaps

    auto one = [](Shape s) {
      s[0] = 1;
      return s;
    };
    // Z of one value per output channel, for all items or per item: [1 or N, C, 1, 1], or
    // [1 or N, 1, 1, C] channels-last (the UNet's time embedding). Folded into the bias (see
    // ConvPlan::z_as_bias), per item when it varies per item.
    const size_t z_channel = channels_last_ ? 3 : 1;
    if (has_z && zs->size() == 4 && (*zs)[z_channel] == ys[1] &&
        shape_numel(*zs) == (*zs)[0] * ys[1] && ((*zs)[0] == 1 || (*zs)[0] == xs[0])) {
      const bool per_item = (*zs)[0] > 1;
      std::optional<ConvPlan> p =
          per_item ? make_plan(node, one(xs), ws, true, nullptr, one(y_node), one(ys))
                   : make_plan(node, xs, ws, true, nullptr, y_node, ys);
      if (p) {
        if (per_item) p->items = xs[0];  // (a shared Z's plan may run per item for Winograd too)
        p->z_as_bias = true;
        p->item_bias.resize(static_cast<size_t>(ys[1]));
      }
      return p;
    }
    // A Winograd conv is planned for one item and run once per item: oneDNN picks among its
    // Winograd kernels (F(2x2, 3x3), F(4x4, 3x3), their schedules) by batch size too, and they
    // round differently. Per item, a batch gives each item's result bit for bit as a batch of
    // one does, as the direct kernels do: the parallel runner's shards and a server's dynamic
    // batches equal one device running the whole batch.
    if (xs[0] > 1 && (!has_z || *zs == y_node) && worth_winograd(a, xs, ws, ys)) {
      const Shape z1 = has_z ? one(*zs) : Shape();
      std::optional<ConvPlan> p =
          make_plan(node, one(xs), ws, has_bias, has_z ? &z1 : nullptr, one(y_node), one(ys));
      if (p && p->winograd) {
        p->items = xs[0];
        return p;
      }
    }
    // Other Z varying per item and broadcast within one: a plan for one item, run per item (see
    // ConvPlan::items). Z's batch dim is its first in either layout.
    if (has_z && zs->size() == 4 && (*zs)[0] == xs[0] && xs[0] > 1 && *zs != y_node) {
      const Shape z1 = one(*zs);
      std::optional<ConvPlan> p = make_plan(node, one(xs), ws, has_bias, &z1, one(y_node), one(ys));
      if (p) p->items = xs[0];
      return p;
    }

    ConvPlan p;
    // Every X and Y of a 1x1 conv on 1x1 X without padding: NCHW and NHWC are the same bytes.
    p.dense = constant_w_ && a.group == 1 && xs[2] == 1 && xs[3] == 1 && ws[2] == 1 && ws[3] == 1 &&
              ys[2] == 1 && ys[3] == 1 &&
              std::all_of(pad_begin.begin(), pad_begin.end(), [](int64_t v) { return v == 0; }) &&
              (!has_z || *zs == y_node);
    if (p.dense) return p;
    const Tag layout = channels_last_ ? Tag::nhwc : Tag::nchw;
    p.x_md = memory::desc(to_dims(xs), Dt::f32, layout);
    p.y_md = memory::desc(to_dims(ys), Dt::f32, layout);
    memory::desc z_md = p.y_md;
    if (has_z) {
      p.z_mode = *zs == y_node ? ConvPlan::ZMode::kSum : ConvPlan::ZMode::kBinary;
      // A broadcasting Z: its dims with leading 1s, as NCHW dims in the node's layout.
      Shape z4 = *zs;
      z4.insert(z4.begin(), 4 - z4.size(), 1);
      z_md = memory::desc(to_dims(channels_last_ ? nhwc_to_nchw(z4) : z4), Dt::f32, layout);
    }
    if (a.group == 1) {
      p.w_md = memory::desc(to_dims(ws), Dt::f32, Tag::oihw);
    } else {
      p.w_md = memory::desc({a.group, ws[0] / a.group, ws[1], ws[2], ws[3]}, Dt::f32, Tag::goihw);
    }
    if (has_bias) p.b_md = memory::desc({ws[0]}, Dt::f32, Tag::x);
    memory::desc x_any(to_dims(xs), Dt::f32, Tag::any);
    memory::desc y_any(to_dims(ys), Dt::f32, Tag::any);
    memory::desc w_any(p.w_md.dims(), Dt::f32, Tag::any);
    const auto prop = dnnl::prop_kind::forward_inference;
    // With a bias the descriptor takes it; without, the overload with no bias.
    auto desc = [&](dnnl::algorithm alg) {
      return has_bias ? dnnl::convolution_forward::desc(prop, alg, x_any, w_any, p.b_md, y_any,
                                                        strides, dilations, pad_l, pad_r)
                      : dnnl::convolution_forward::desc(prop, alg, x_any, w_any, y_any, strides,
                                                        dilations, pad_l, pad_r);
    };
    dnnl::post_ops ops;
    if (p.z_mode == ConvPlan::ZMode::kSum) ops.append_sum(1.0f);
    if (p.z_mode == ConvPlan::ZMode::kBinary) ops.append_binary(dnnl::algorithm::binary_add, z_md);
    if (!activation_post_ops(act_, ops)) throw dnnl::error(dnnl_unimplemented, "activation");
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    attr = user_scratchpad(attr);
    // Winograd where it pays (worth_winograd), direct otherwise and wherever oneDNN has no
    // Winograd kernel for it: on CPUs without AVX-512, or with post-ops it lacks (SiLU, binary).
    // Only for one item: a batch has tried its items' plan above, and where one item has no
    // Winograd kernel, a batch taking one would round its items differently from a lone item.
    if (xs[0] == 1 && worth_winograd(a, xs, ws, ys)) {
      try {
        p.pd = dnnl::convolution_forward::primitive_desc(
            desc(dnnl::algorithm::convolution_winograd), attr, engine());
        p.winograd = true;
      } catch (const dnnl::error&) {
      }
    }
    if (!p.winograd)
      p.pd = dnnl::convolution_forward::primitive_desc(desc(dnnl::algorithm::convolution_direct),
                                                       attr, engine());
    if (p.winograd) winograd_plan_count.fetch_add(1, std::memory_order_relaxed);
    p.conv = dnnl::convolution_forward(p.pd);
    p.x_md = same_bytes_or(p.x_md, p.pd.src_desc());
    p.y_md = same_bytes_or(p.y_md, p.pd.dst_desc());
    // The other plain layout, which a transpose reaches.
    const Tag other = channels_last_ ? Tag::nchw : Tag::nhwc;
    p.batch = xs[0];
    if (p.pd.src_desc() != p.x_md) {
      p.x_mem = memory(p.pd.src_desc(), engine());
      p.x_transpose = p.pd.src_desc() == memory::desc(to_dims(xs), Dt::f32, other);
      p.x_rows = channels_last_ ? xs[2] * xs[3] : xs[1];
      p.x_cols = channels_last_ ? xs[1] : xs[2] * xs[3];
      if (!p.x_transpose) p.x_reorder = make_reorder(p.x_md, p.pd.src_desc());
    }
    if (p.pd.dst_desc() != p.y_md) {
      p.y_mem = memory(p.pd.dst_desc(), engine());
      p.y_transpose = p.pd.dst_desc() == memory::desc(to_dims(ys), Dt::f32, other);
      // The primitive's Y: NHWC ([HW, C] per item) when the node's is NCHW, and vice versa.
      p.y_rows = channels_last_ ? ys[1] : ys[2] * ys[3];
      p.y_cols = channels_last_ ? ys[2] * ys[3] : ys[1];
      if (!p.y_transpose) {
        p.y_reorder = make_reorder(p.pd.dst_desc(), p.y_md);
        if (p.z_mode == ConvPlan::ZMode::kSum)
          p.y_reorder_in = make_reorder(p.y_md, p.pd.dst_desc());
      }
    }
    p.w = PackedWeights(p.w_md, p.pd.weights_desc(), w_value_);
    p.x_user = memory(p.x_md, engine(), nullptr);
    p.y_user = memory(p.y_md, engine(), nullptr);
    p.z_user = memory(z_md, engine(), nullptr);
    p.args = {{DNNL_ARG_SRC, p.x_mem ? p.x_mem : p.x_user},
              {DNNL_ARG_WEIGHTS, p.w.arg()},
              {DNNL_ARG_DST, p.y_mem ? p.y_mem : p.y_user}};
    if (has_bias) {
      p.b_user = memory(p.b_md, engine(), nullptr);
      p.args[DNNL_ARG_BIAS] = p.b_user;
    }
    if (p.z_mode == ConvPlan::ZMode::kBinary)
      p.args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] = p.z_user;
    add_scratchpad(p.args, make_scratchpad(p.pd.scratchpad_desc()));
    return p;
  }

  bool constant_w_;
  const Value* w_value_;  // W when it is a constant (its prepacked layouts)
  bool channels_last_;    // FusedConv with NHWC X, Z and Y
  FusedActivation act_;   // FusedConv's activation (none for Conv)
};

// Declines (nullptr → the reference backend) what the graph already shows the fast path does
// not handle: another dtype or rank than 2-D float32. Unknown types are accepted and checked per
// call.
std::unique_ptr<Kernel> make_conv(const Node& node) {
  if (!node.has_input(0) || !node.has_input(1)) return nullptr;
  const Value* x = node.inputs[0];
  if (known_not_float32(x)) return nullptr;
  if (x->shape_known && x->shape.size() != 4) return nullptr;
  FusedActivation act;
  if (node.domain == kFusedDomain) {
    act = read_fused_activation(node);
    dnnl::post_ops probe;
    if (!activation_post_ops(act, probe)) return nullptr;
  }
  return std::make_unique<ConvKernel>(node, act);
}

}  // namespace

int64_t winograd_conv_plans() {
  return winograd_plan_count.load(std::memory_order_relaxed);
}

void register_conv_kernels(KernelRegistry& r) {
  r.add("Conv", make_conv);
  r.add("FusedConv", make_conv, kFusedDomain);
}

}  // namespace tandem::cpu

// The CPU backend's Resize for the nearest-neighbour upsampling UNets use (torch's
// F.interpolate(scale_factor=k, mode="nearest"): Resize-11+ with mode "nearest",
// coordinate_transformation_mode "asymmetric", nearest_mode "floor"): each output element
// (y, x) of the last two axes copies input (y / ky, x / kx), for whole factors ky, kx >= 1.
// Every input row is widened once and copied ky times; planes are spread over the threads.
//
// Everything else (other modes and transforms, fractional factors, resizing other axes, element
// sizes other than 4 bytes) runs on the node's reference kernel.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_util.h"
#include "ops/shape_utils.h"

namespace tandem::cpu {

namespace {

class NearestUpsampleKernel : public Kernel {
 public:
  explicit NearestUpsampleKernel(const Node& node) : ref_(make_reference_kernel(node)) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    int64_t ky = 0, kx = 0;
    if (!factors(ctx.node, inputs, *outputs[0], ky, kx)) {
      note_reference_fallback();
      ref_->compute(ctx, inputs, outputs);
      return;
    }
    const Tensor& x = *inputs[0];
    Tensor& y = *outputs[0];
    const size_t rank = x.rank();
    const int64_t h = x.dim(rank - 2), w = x.dim(rank - 1);
    const int64_t planes = h * w > 0 ? x.numel() / (h * w) : 0;
    const int64_t ow = w * kx;
    const uint32_t* src = static_cast<const uint32_t*>(x.raw());
    uint32_t* dst = static_cast<uint32_t*>(y.raw());
    parallel_for_work(ctx, planes, double(h * ky * ow), [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        for (int64_t r = 0; r < h; ++r) {
          const uint32_t* in = src + (p * h + r) * w;
          uint32_t* out = dst + (p * h + r) * ky * ow;
          if (kx == 2) {
            for (int64_t c = 0; c < w; ++c) out[2 * c] = out[2 * c + 1] = in[c];
          } else {
            for (int64_t c = 0; c < w; ++c)
              for (int64_t k = 0; k < kx; ++k) out[c * kx + k] = in[c];
          }
          for (int64_t k = 1; k < ky; ++k) std::memcpy(out + k * ow, out, ow * sizeof(uint32_t));
        }
      }
    });
  }

 private:
  // The whole factors of the last two axes when the fast path applies.
  static bool factors(const Node& node, std::span<const Tensor* const> inputs, const Tensor& y,
                      int64_t& ky, int64_t& kx) {
    const Tensor& x = *inputs[0];
    if (dtype_size(x.dtype()) != 4 || y.dtype() != x.dtype() || x.rank() < 2 ||
        y.rank() != x.rank() || x.numel() == 0)
      return false;
    std::vector<int64_t> k(x.rank());
    for (size_t i = 0; i < x.rank(); ++i) {
      if (y.dim(i) % x.dim(i) != 0) return false;
      k[i] = y.dim(i) / x.dim(i);
      if (i + 2 < x.rank() && k[i] != 1) return false;
    }
    // Given scales must be those factors exactly (asymmetric maps x_out to x_out / scale).
    const Tensor* scales = inputs.size() > 2 ? inputs[2] : nullptr;
    const Tensor* sizes = inputs.size() > 3 ? inputs[3] : nullptr;
    if (!(sizes && sizes->numel() > 0)) {
      if (!scales || scales->dtype() != DataType::kFloat32 ||
          scales->numel() != static_cast<int64_t>(x.rank()))
        return false;
      for (size_t i = 0; i < x.rank(); ++i)
        if (scales->data<float>()[i] != static_cast<float>(k[i])) return false;
    }
    ky = k[x.rank() - 2];
    kx = k[x.rank() - 1];
    return true;
  }

  std::unique_ptr<Kernel> ref_;
};

// Takes only the mode this kernel computes; anything else goes to the reference backend.
std::unique_ptr<Kernel> make_resize(const Node& node) {
  if (node.opset < 11 || node.has_attr("axes")) return nullptr;
  if (node.attr_string_or("mode", "nearest") != "nearest" ||
      node.attr_string_or("coordinate_transformation_mode", "half_pixel") != "asymmetric" ||
      node.attr_string_or("nearest_mode", "round_prefer_floor") != "floor")
    return nullptr;
  if (node.opset >= 18 && node.attr_string_or("keep_aspect_ratio_policy", "stretch") != "stretch")
    return nullptr;
  return std::make_unique<NearestUpsampleKernel>(node);
}

}  // namespace

void register_resize_kernels(KernelRegistry& r) {
  r.add("Resize", make_resize);
}

}  // namespace tandem::cpu

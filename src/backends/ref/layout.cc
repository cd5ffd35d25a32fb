// Reference kernels of the channels-last layout ops: ToChannelsLast and ToChannelsFirst
// (kFusedDomain, ops/layout.h), each one strided copy.
#include "backends/ref/layout.h"

#include <vector>

#include "backends/ref/strided_copy.h"
#include "core/error.h"
#include "ops/layout.h"
#include "ops/schema.h"

namespace tandem {

namespace {
void check_pair(const KernelContext& ctx, const Tensor& src, const Tensor& dst, const Shape& want) {
  TANDEM_CHECK(src.rank() == 4 && dst.shape() == want && src.dtype() == dst.dtype(),
               ErrorCode::kInternal, "{}: cannot copy {} {} into {} {}", ctx.node.describe(),
               dtype_name(src.dtype()), shape_str(src.shape()), dtype_name(dst.dtype()),
               shape_str(dst.shape()));
}
}  // namespace

void copy_to_channels_last(const KernelContext& ctx, const Tensor& src, Tensor& dst) {
  check_pair(ctx, src, dst, src.rank() == 4 ? nchw_to_nhwc(src.shape()) : Shape{});
  const int64_t c = src.dim(1), h = src.dim(2), w = src.dim(3);
  // dst axes (n, h, w, c) read src at n * CHW + h * W + w + c * HW.
  strided_copy(ctx, static_cast<uint8_t*>(dst.raw()), static_cast<const uint8_t*>(src.raw()),
               dst.shape(), {c * h * w, w, 1, h * w}, dtype_size(src.dtype()));
}

void copy_to_channels_first(const KernelContext& ctx, const Tensor& src, Tensor& dst) {
  check_pair(ctx, src, dst, src.rank() == 4 ? nhwc_to_nchw(src.shape()) : Shape{});
  const int64_t h = src.dim(1), w = src.dim(2), c = src.dim(3);
  // dst axes (n, c, h, w) read src at n * HWC + c + h * WC + w * C.
  strided_copy(ctx, static_cast<uint8_t*>(dst.raw()), static_cast<const uint8_t*>(src.raw()),
               dst.shape(), {h * w * c, 1, w * c, c}, dtype_size(src.dtype()));
}

void run_on_channels_first(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                           std::span<Tensor* const> outputs, const NchwFn& nchw) {
  TANDEM_CHECK(!inputs.empty() && inputs[0] && inputs[0]->rank() == 4 && !outputs.empty() &&
                   outputs[0] && outputs[0]->rank() == 4,
               ErrorCode::kInvalidModel, "{}: channels_last needs rank-4 X and Y",
               ctx.node.describe());
  Tensor x(inputs[0]->dtype(), nhwc_to_nchw(inputs[0]->shape()));
  copy_to_channels_first(ctx, *inputs[0], x);
  Tensor y(outputs[0]->dtype(), nhwc_to_nchw(outputs[0]->shape()));
  std::vector<const Tensor*> ins(inputs.begin(), inputs.end());
  ins[0] = &x;
  std::vector<Tensor*> outs(outputs.begin(), outputs.end());
  outs[0] = &y;
  nchw(ins, outs);
  copy_to_channels_last(ctx, y, *outputs[0]);
}

namespace {
void to_channels_last(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                      std::span<Tensor* const> outputs) {
  copy_to_channels_last(ctx, *inputs[0], *outputs[0]);
}
void to_channels_first(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                       std::span<Tensor* const> outputs) {
  copy_to_channels_first(ctx, *inputs[0], *outputs[0]);
}
}  // namespace

void register_layout_ref_kernels(KernelRegistry& r) {
  r.add("ToChannelsLast", to_channels_last, kFusedDomain);
  r.add("ToChannelsFirst", to_channels_first, kFusedDomain);
}

}  // namespace tandem

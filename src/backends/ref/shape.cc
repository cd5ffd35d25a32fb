// Reference kernels of the shape family. Reshape, Flatten, Squeeze, Unsqueeze and Identity copy
// the bytes (the output shape was already computed by the schema); the others fill in values.
#include "ops/shape.h"

#include <cstring>
#include <vector>

#include "backends/backend.h"
#include "backends/ref/dispatch.h"
#include "backends/ref/strided_copy.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/shape_utils.h"

namespace tandem {

namespace {

void copy_bytes(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                std::span<Tensor* const> outputs) {
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  TANDEM_CHECK(x.nbytes() == y.nbytes() && x.dtype() == y.dtype(), ErrorCode::kInternal,
               "{}: output {} {} does not match input {} {}", ctx.node.describe(),
               dtype_name(y.dtype()), shape_str(y.shape()), dtype_name(x.dtype()),
               shape_str(x.shape()));
  if (x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
}

void shape_kernel(const KernelContext& ctx, const ShapeOpAttrs& attrs,
                  std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Shape& s = inputs[0]->shape();
  const int64_t start = attrs.shape_range(static_cast<int64_t>(s.size())).first;
  int64_t* out = outputs[0]->data<int64_t>();
  for (int64_t i = 0; i < outputs[0]->numel(); ++i) out[i] = s[static_cast<size_t>(start + i)];
}

void size_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                 std::span<Tensor* const> outputs) {
  *outputs[0]->data<int64_t>() = inputs[0]->numel();
}

// Repeats the `esize` bytes at `value` over the whole output.
void fill_with(Tensor& y, const void* value) {
  size_t esize = dtype_size(y.dtype());
  uint8_t* p = static_cast<uint8_t*>(y.raw());
  for (int64_t i = 0; i < y.numel(); ++i) std::memcpy(p + i * esize, value, esize);
}

void constant_of_shape_kernel(const KernelContext& ctx, const ShapeOpAttrs& attrs,
                              std::span<const Tensor* const> inputs,
                              std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  Tensor& y = *outputs[0];
  if (!attrs.value.defined()) return;  // default: float 0, and outputs arrive zero-filled
  const Tensor& v = attrs.value;
  TANDEM_CHECK(v.dtype() == y.dtype() && v.numel() == 1, ErrorCode::kInternal,
               "{}: value does not match the output", node.describe());
  fill_with(y, v.raw());
}

void range_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                  std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  Tensor& y = *outputs[0];
  dispatch_numeric(y.dtype(), node, [&](auto tag) {
    using T = decltype(tag);
    T start = *inputs[0]->data<T>(), delta = *inputs[2]->data<T>();
    T* out = y.data<T>();
    for (int64_t i = 0; i < y.numel(); ++i)
      out[i] = static_cast<T>(start + static_cast<T>(i) * delta);
  });
}

void expand_kernel(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                   std::span<Tensor* const> outputs) {
  const Tensor& x = *inputs[0];
  Tensor& y = *outputs[0];
  TANDEM_CHECK(broadcast_shapes(x.shape(), y.shape(), ctx.node) == y.shape(), ErrorCode::kInternal,
               "{}: cannot expand {} to {}", ctx.node.describe(), shape_str(x.shape()),
               shape_str(y.shape()));
  strided_copy(ctx, static_cast<uint8_t*>(y.raw()), static_cast<const uint8_t*>(x.raw()), y.shape(),
               broadcast_strides(x.shape(), y.shape()), dtype_size(x.dtype()));
}

void eye_like_kernel(const KernelContext& ctx, const ShapeOpAttrs& attrs,
                     std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  Tensor& y = *outputs[0];
  int64_t rows = y.dim(0), cols = y.dim(1), k = attrs.k;
  // The bytes of a 1 of the output dtype.
  uint8_t one[8] = {};
  switch (y.dtype()) {
    case DataType::kBool:
      one[0] = 1;
      break;
    case DataType::kFloat16: {
      uint16_t h = float_to_half(1.0f);
      std::memcpy(one, &h, 2);
      break;
    }
    case DataType::kBFloat16: {
      uint16_t h = float_to_bfloat16(1.0f);
      std::memcpy(one, &h, 2);
      break;
    }
    default:
      dispatch_numeric(y.dtype(), node, [&](auto tag) {
        using T = decltype(tag);
        T v = T(1);
        std::memcpy(one, &v, sizeof(T));
      });
  }
  size_t esize = dtype_size(y.dtype());
  uint8_t* p = static_cast<uint8_t*>(y.raw());
  for (int64_t i = 0; i < rows; ++i) {
    int64_t j = i + k;
    if (j >= 0 && j < cols)
      std::memcpy(p + (i * cols + j) * static_cast<int64_t>(esize), one, esize);
  }
}

void constant_kernel(const KernelContext& ctx, const ShapeOpAttrs& attrs,
                     std::span<const Tensor* const> inputs, std::span<Tensor* const> outputs) {
  const Node& node = ctx.node;
  Tensor& y = *outputs[0];
  const Tensor& t = attrs.value;
  TANDEM_CHECK(t.nbytes() == y.nbytes(), ErrorCode::kInternal, "{}: output size mismatch",
               node.describe());
  if (t.nbytes()) std::memcpy(y.raw(), t.raw(), t.nbytes());
}

}  // namespace

void register_shape_ref_kernels(KernelRegistry& r) {
  // The output is the input's bytes under another shape: planned as a view, no work.
  r.add_view("Reshape", copy_bytes);
  r.add_view("Flatten", copy_bytes);
  r.add_view("Squeeze", copy_bytes);
  r.add_view("Unsqueeze", copy_bytes);
  r.add_view("Identity", copy_bytes);
  r.add("Shape", shape_kernel);
  r.add("Size", size_kernel);
  r.add("ConstantOfShape", constant_of_shape_kernel);
  r.add("Range", range_kernel);
  r.add("Expand", expand_kernel);
  r.add("EyeLike", eye_like_kernel);
  r.add("Constant", constant_kernel);
}

}  // namespace tandem

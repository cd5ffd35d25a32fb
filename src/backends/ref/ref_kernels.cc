// The reference backend's kernel table: every family of reference kernels, listed explicitly.
#include "backends/backend.h"
#include "backends/ref/ref_backend.h"

namespace tandem {

namespace {
class ReferenceBackend : public Backend {
 public:
  ReferenceBackend() {
    register_elementwise_ref_kernels(kernels_);
    register_activation_ref_kernels(kernels_);
    register_cast_ref_kernels(kernels_);
    register_conv_ref_kernels(kernels_);
    register_pool_ref_kernels(kernels_);
    register_normalization_ref_kernels(kernels_);
    register_resize_ref_kernels(kernels_);
    register_matmul_ref_kernels(kernels_);
    register_softmax_ref_kernels(kernels_);
    register_reduce_ref_kernels(kernels_);
    register_shape_ref_kernels(kernels_);
    register_tensor_ref_kernels(kernels_);
    register_signal_ref_kernels(kernels_);
    register_detection_ref_kernels(kernels_);
    register_selection_ref_kernels(kernels_);
    register_recurrent_ref_kernels(kernels_);
    register_quantize_ref_kernels(kernels_);
    register_dropout_ref_kernels(kernels_);
    register_loss_ref_kernels(kernels_);
    register_text_ref_kernels(kernels_);
    register_layout_ref_kernels(kernels_);
  }
  const char* name() const override { return "ref"; }
  const KernelRegistry& kernels() const override { return kernels_; }

 private:
  KernelRegistry kernels_;
};
}  // namespace

const Backend& reference_backend() {
  static const ReferenceBackend backend;
  return backend;
}

}  // namespace tandem

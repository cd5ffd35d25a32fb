// The CPU backend's kernel table: every fast CPU kernel, listed explicitly. Ops not listed here
// (or declined by their factory) run on the reference backend.
#include "backends/cpu/cpu_kernels.h"

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"

namespace tandem {

namespace {
class CpuBackend : public Backend {
 public:
  CpuBackend() {
    cpu::register_conv_kernels(kernels_);
    cpu::register_conv_transpose_kernels(kernels_);
    cpu::register_concat_kernels(kernels_);
    cpu::register_matmul_kernels(kernels_);
    cpu::register_softmax_kernels(kernels_);
    cpu::register_eltwise_kernels(kernels_);
    cpu::register_binary_kernels(kernels_);
    cpu::register_resize_kernels(kernels_);
    cpu::register_transpose_kernels(kernels_);
    cpu::register_recurrent_kernels(kernels_);
    cpu::register_batchnorm_kernels(kernels_);
    cpu::register_pool_kernels(kernels_);
    cpu::register_layout_kernels(kernels_);
    cpu::register_normalization_kernels(kernels_);
    cpu::register_gelu_kernels(kernels_);
    cpu::register_attention_kernels(kernels_);
  }
  const char* name() const override { return "cpu"; }
  const KernelRegistry& kernels() const override { return kernels_; }

 private:
  KernelRegistry kernels_;
};
}  // namespace

const Backend& cpu_backend() {
  static const CpuBackend backend;
  return backend;
}

}  // namespace tandem

#include "backends/cpu/dnnl_util.h"

#include <omp.h>

#include <atomic>

#include "backends/cpu/cpu_kernels.h"
#include "core/error.h"

namespace tandem::cpu {

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

void set_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);  // the calling thread's ICV only; cheap
}

std::unique_ptr<Kernel> make_reference_kernel(const Node& node) {
  const KernelFactory* f = reference_backend().kernels().find(node.domain, node.op_type);
  TANDEM_CHECK(f, ErrorCode::kInternal, "{}: the reference backend has no kernel for it",
               node.describe());
  std::unique_ptr<Kernel> k = (*f)(node);
  TANDEM_CHECK(k, ErrorCode::kInternal, "{}: the reference backend declined it", node.describe());
  return k;
}

namespace {
std::atomic<int64_t> fallbacks{0};
}  // namespace

void note_reference_fallback() {
  fallbacks.fetch_add(1, std::memory_order_relaxed);
}
int64_t reference_fallbacks() {
  return fallbacks.load(std::memory_order_relaxed);
}

dnnl::memory::dims to_dims(const Shape& s) {
  return dnnl::memory::dims(s.begin(), s.end());
}

dnnl::reorder make_reorder(const dnnl::memory::desc& from, const dnnl::memory::desc& to) {
  return dnnl::reorder(dnnl::reorder::primitive_desc(engine(), from, engine(), to));
}

}  // namespace tandem::cpu

#include "backends/cpu/dnnl_util.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/prepack.h"
#include "backends/ref/ref_backend.h"
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

dnnl::memory::dims row_major(const dnnl::memory::dims& dims) {
  dnnl::memory::dims s(dims.size(), 1);
  for (size_t i = dims.size(); i-- > 1;) s[i - 1] = s[i] * dims[i];
  return s;
}

bool known_not_float32(const Value* v) {
  return v && v->dtype != DataType::kUndefined && v->dtype != DataType::kFloat32;
}

void execute_src_dst(const dnnl::primitive& prim, const dnnl::memory::desc& md, const float* src,
                     float* dst, const dnnl::memory& scratch) {
  dnnl::stream& s = stream();
  dnnl::memory src_mem(md, engine(), const_cast<float*>(src));
  dnnl::memory dst_mem(md, engine(), dst);
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_DST, dst_mem}};
  add_scratchpad(args, scratch);
  prim.execute(s, args);
  s.wait();
}

void set_threads(int threads) {
  if (threads > 0) omp_set_num_threads(threads);  // the calling thread's ICV only; cheap
}

namespace {
// The executor does not zero the outputs of CPU-backend kernels (they write every element), but
// reference kernels may rely on zeroed outputs (accumulating loops, untouched padding): the
// fallback zeroes them first.
class ZeroingReferenceKernel : public Kernel {
 public:
  explicit ZeroingReferenceKernel(std::unique_ptr<Kernel> ref) : ref_(std::move(ref)) {}
  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    for (Tensor* t : outputs) {
      if (!t || !t->nbytes()) continue;
      // An output computed in place over an input keeps that input's values.
      bool aliases_input = false;
      for (const Tensor* in : inputs)
        aliases_input = aliases_input || (in && in->raw() == t->raw());
      if (!aliases_input) std::memset(t->raw(), 0, t->nbytes());
    }
    ref_->compute(ctx, inputs, outputs);
  }

 private:
  std::unique_ptr<Kernel> ref_;
};
}  // namespace

int threads_for(const KernelContext& ctx, double work) {
  const double useful = work / kMinWorkPerThread;
  if (useful < 2) return 1;
  return static_cast<int>(std::min<double>(ctx.pool.size(), useful));
}

void parallel_for_work(const KernelContext& ctx, int64_t n, double item_work,
                       const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t parts = std::min<int64_t>(n, threads_for(ctx, double(n) * item_work));
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  ctx.pool.parallel_for(
      parts, [&](int64_t begin, int64_t end) { fn(n * begin / parts, n * end / parts); });
}

std::unique_ptr<Kernel> make_reference_kernel(const Node& node) {
  const KernelFactory* f = reference_backend().kernels().find(node.domain, node.op_type);
  TANDEM_CHECK(f, ErrorCode::kInternal, "{}: the reference backend has no kernel for it",
               node.describe());
  std::unique_ptr<Kernel> k = (*f)(node);
  TANDEM_CHECK(k, ErrorCode::kInternal, "{}: the reference backend declined it", node.describe());
  return std::make_unique<ZeroingReferenceKernel>(std::move(k));
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

dnnl::primitive_attr user_scratchpad(dnnl::primitive_attr attr) {
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::memory make_scratchpad(const dnnl::memory::desc& md) {
  if (md.get_size() == 0) return dnnl::memory();
  return dnnl::memory(md, engine());
}

void add_scratchpad(std::unordered_map<int, dnnl::memory>& args, const dnnl::memory& scratch) {
  if (scratch) args[DNNL_ARG_SCRATCHPAD] = scratch;
}

dnnl::reorder make_reorder(const dnnl::memory::desc& from, const dnnl::memory::desc& to) {
  // Reorders are run as execute(stream, src, dst), with no room for a scratchpad argument: take a
  // user-mode reorder that needs none (plain float layouts), else the library's.
  dnnl::reorder::primitive_desc pd(engine(), from, engine(), to, user_scratchpad());
  if (pd.scratchpad_desc().get_size() == 0) return dnnl::reorder(pd);
  return dnnl::reorder(dnnl::reorder::primitive_desc(engine(), from, engine(), to));
}

PackedWeights::PackedWeights(const dnnl::memory::desc& user_md, const dnnl::memory::desc& want,
                             const Value* constant_value)
    : user(user_md, engine(), nullptr), constant(constant_value) {
  if (want == user_md) return;
  // The source layout is part of the key: the same constant read as W and as W^T (Gemm's
  // transB) packs into different bytes under the same target layout.
  if (constant) {
    std::string from = layout_key(user_md), to = layout_key(want);
    if (!from.empty() && !to.empty()) key = from + " -> " + to;
  }
  if (const PrepackedLayout* p = find_prepacked(constant, key, want.get_size())) {
    // oneDNN never writes a primitive's weights: the read-only mapping serves as they are.
    packed = dnnl::memory(want, engine(), const_cast<void*>(p->data));
    keeper = p->keeper;
    prepacked = true;
    count_prepacked(true, p->bytes);
    return;
  }
  packed = dnnl::memory(want, engine());
  reorder = make_reorder(user_md, want);
}

void PackedWeights::prepare(dnnl::stream& s, const float* w, bool is_constant) {
  if (prepacked) return;
  user.set_data_handle(const_cast<float*>(w));
  if (reorder) {
    reorder->execute(s, user, packed);
    if (is_constant) {
      s.wait();  // recorded bytes must be complete
      prepacked = true;
      count_prepacked(false, packed.get_desc().get_size());
      record_packed(constant, key, packed);
    }
  }
}

}  // namespace tandem::cpu

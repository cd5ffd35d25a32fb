// What the CPU backend's oneDNN kernels share: the engine, a stream, the thread count, dims and
// memory descriptors for plain tensors, and the reference kernel a node falls back to.
#pragma once

#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <string>
#include <unordered_map>

#include "backends/backend.h"

namespace tandem::cpu {

// The one CPU engine of the process (oneDNN engines are thread-safe and cheap to share).
dnnl::engine& engine();

// A stream on engine() for the calling thread (streams are not meant to be shared across
// threads; one per thread is the simplest safe choice).
dnnl::stream& stream();

// Makes the oneDNN primitives this thread runs next use `threads` threads. Debian's oneDNN 2.6
// is built with the OpenMP CPU runtime (DNNL_CPU_RUNTIME == OMP), so its parallel regions take
// their size from the calling thread's OpenMP ICV; the threadpool interop API does not exist in
// that build. Tandem's ThreadPool runs its loops on OpenMP as well, so oneDNN's regions and ours
// use the same team of threads. We set the ICV through omp_set_num_threads (per calling thread,
// so sessions on different threads with different thread counts do not disturb each other).
// Kernels call it with threads_for(ctx, work) before they create a primitive (oneDNN sizes some
// primitives' teams at creation) and so before running it.
void set_threads(int threads);

// How many of the session's threads a loop or primitive of `work` units should use: 1 when the
// work is too small to pay for waking the others (an OpenMP fork/join costs microseconds, as much
// as a small kernel), else up to one thread per kMinWorkPerThread units. A unit is one element
// read or written; a multiply-add counts 1/8, as vector units do 16 of them per instruction).
inline constexpr double kMinWorkPerThread = ThreadPool::kGrain;
int threads_for(const KernelContext& ctx, double work);

// ctx.pool.parallel_for over [0, n) for items of `item_work` units each, on threads_for(ctx,
// n * item_work) threads (inline on the calling thread when that is 1).
void parallel_for_work(const KernelContext& ctx, int64_t n, double item_work,
                       const std::function<void(int64_t, int64_t)>& fn);

// Creates the reference backend's kernel for `node` (the fallback when the fast path does not
// apply to the tensors a compute call gets); throws if the reference backend has none. The
// returned kernel zeroes the outputs before the reference kernel runs, as the executor does for
// reference kernels (it does not for CPU-backend kernels).
std::unique_ptr<Kernel> make_reference_kernel(const Node& node);

// Counts one compute call handed to the reference kernel (see reference_fallbacks()).
void note_reference_fallback();

// dnnl dims from a tensor shape.
dnnl::memory::dims to_dims(const Shape& s);

// Row-major strides (in elements) of `dims`.
dnnl::memory::dims row_major(const dnnl::memory::dims& dims);

// True when the graph already knows `v` holds something other than float32 (so a float32-only
// kernel should decline the node at once); false when it is float32 or not known yet.
bool known_not_float32(const Value* v);

// Runs a one-source, one-destination primitive (eltwise, softmax, ...) over plain float buffers
// described by `md`, on this thread's stream, with the thread count the kernel set before it
// made the primitive (set_threads). A dnnl::error propagates (DnnlKernel reports it, naming the
// node). `scratch`: the primitive's scratch memory (make_scratchpad), if it needs one.
void execute_src_dst(const dnnl::primitive& prim, const dnnl::memory::desc& md, const float* src,
                     float* dst, const dnnl::memory& scratch = dnnl::memory());

// Scratch memory. oneDNN's default ("library") scratchpad is kept per thread and sized when a
// primitive is created, so a primitive created on one thread and run on another (a Model built
// on one Python thread and used on another) writes past its end. Every primitive here is created
// with `user_scratchpad()` (scratchpad_mode::user) and run with its own scratch memory, kept in
// the kernel's plan (kernels run one call at a time).
dnnl::primitive_attr user_scratchpad(dnnl::primitive_attr attr = dnnl::primitive_attr());
// The scratch memory for a primitive descriptor's scratchpad_desc(); an empty handle when it
// needs none. add_scratchpad puts it into an argument map when there is one.
dnnl::memory make_scratchpad(const dnnl::memory::desc& md);
void add_scratchpad(std::unordered_map<int, dnnl::memory>& args, const dnnl::memory& scratch);

// A reorder primitive from layout `from` to layout `to` on engine().
dnnl::reorder make_reorder(const dnnl::memory::desc& from, const dnnl::memory::desc& to);

// A primitive's weights: the node's tensor (layout `user_md`) as it is when the primitive takes
// that layout, else reordered into the one it wants (`want`) on every call, or once when the
// weights are a constant of the model (prepacked). A constant whose Value carries that very
// layout (a .tandem file's prepacked weights, backends/cpu/prepack.h) is read from there in
// place, never reordered.
struct PackedWeights {
  dnnl::memory user;                     // the node's tensor, pointed at each call's buffer
  std::optional<dnnl::reorder> reorder;  // set when the layout must be made here
  dnnl::memory packed;                   // the weights in the primitive's layout
  bool prepacked = false;                // packed holds the constant weights
  const Value* constant = nullptr;       // the weights' Value when they are a constant
  std::string key;                       // layout_key(want) for a constant
  std::shared_ptr<const void> keeper;    // keeps a file's prepacked bytes mapped

  PackedWeights() = default;
  PackedWeights(const dnnl::memory::desc& user_md, const dnnl::memory::desc& want,
                const Value* constant = nullptr);
  // The memory the primitive reads.
  const dnnl::memory& arg() const { return packed ? packed : user; }
  // Readies the weights `w` for a call on stream `s`; `constant`: they never change, so once
  // packed they stay so.
  void prepare(dnnl::stream& s, const float* w, bool constant);
};

}  // namespace tandem::cpu

// Intra-op parallelism. parallel_for splits [0, n) into contiguous chunks, one per thread, with
// the calling thread taking part. The threads are OpenMP's: oneDNN (the CPU backend) runs on the
// same OpenMP runtime, so Tandem's own loops and oneDNN's share one team of threads instead of
// two sets competing for the same cores (an idle OpenMP team spins for a while).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace tandem {

class ThreadPool {
 public:
  // threads: total threads including the caller (1 = run inline). cores: pin thread i of the
  // team to cores[i % cores.size()] when not empty (the caller to cores[0] at once).
  explicit ThreadPool(int threads, std::vector<int> cores = {});
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return num_threads_; }
  // Makes OpenMP regions the calling thread opens from now on (oneDNN's among them) default to
  // this pool's size. A session does this at the start of each run, so a primitive oneDNN creates
  // during the run sizes its team from the session, not from whatever the thread set last.
  void apply_to_calling_thread() const;
  const std::vector<int>& cores() const { return cores_; }

  // fn(begin, end) over disjoint chunks covering [0, n). Blocks until all are done. An exception
  // thrown by a chunk is rethrown here (the first one). `cost_per_item` (about how many elements
  // one item touches) keeps small jobs on fewer threads: starting a parallel region costs a few
  // microseconds, more than a few thousand elements of work. Unknown cost (0): all threads.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                    int64_t cost_per_item = 0);

  // About this many units of work (an element read or written; eight multiply-adds) per thread
  // before another thread is worth waking. Sized for OpenMP threads that sleep soon after a
  // region (Tandem's short spin, core/openmp_wait.h): a wake-up costs tens of microseconds on a
  // busy machine, so each thread should get about that much work. Every thread-count decision in the
  // engine (parallel_for's cost_per_item, the CPU backend's threads_for) uses this one figure.
  static constexpr int64_t kGrain = 65536;

 private:
  int num_threads_;
  std::vector<int> cores_;
};

// Pins the calling thread to one core; returns false (and leaves it unpinned) on failure.
bool pin_current_thread(int core);

}  // namespace tandem

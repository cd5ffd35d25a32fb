#include "core/thread_pool.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <exception>
#include <mutex>

namespace tandem {

bool pin_current_thread(int core) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

namespace {
// Pins the calling thread once per core: OpenMP reuses its threads, so after the first region
// this is a comparison, not a system call.
void pin_once(int core) {
  thread_local int pinned_to = -1;
  if (pinned_to != core && pin_current_thread(core)) pinned_to = core;
}
}  // namespace

ThreadPool::ThreadPool(int threads, std::vector<int> cores)
    : num_threads_(std::max(1, threads)), cores_(std::move(cores)) {
  if (!cores_.empty()) pin_once(cores_[0]);
}

void ThreadPool::apply_to_calling_thread() const {
  omp_set_num_threads(num_threads_);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn,
                              int64_t cost_per_item) {
  if (n <= 0) return;
  int64_t wanted = n;
  if (cost_per_item > 0) wanted = std::min(n, std::max<int64_t>(1, n * cost_per_item / kGrain));
  if (num_threads_ == 1 || wanted == 1) {
    fn(0, n);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mu;
  const int team = static_cast<int>(std::min<int64_t>(num_threads_, wanted));
#pragma omp parallel num_threads(team)
  {
    const int index = omp_get_thread_num(), parts = omp_get_num_threads();
    if (!cores_.empty()) pin_once(cores_[static_cast<size_t>(index) % cores_.size()]);
    const int64_t begin = n * index / parts, end = n * (index + 1) / parts;
    // Nothing may leave an OpenMP region by exception: keep the first, rethrow after.
    try {
      if (begin < end) fn(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace tandem

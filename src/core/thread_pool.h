// A fixed set of worker threads for intra-op parallelism. parallel_for splits [0, n) into
// contiguous chunks, one per thread, and runs them with the calling thread taking part.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tandem {

class ThreadPool {
 public:
  // threads: total threads including the caller (1 = run inline). cores: pin thread i to
  // cores[i % cores.size()] when not empty.
  explicit ThreadPool(int threads, std::vector<int> cores = {});
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return num_threads_; }

  // fn(begin, end) over disjoint chunks covering [0, n). Blocks until all are done. An exception
  // thrown by a chunk is rethrown here (the first one).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

// Pins the calling thread to one core; returns false (and leaves it unpinned) on failure.
bool pin_current_thread(int core);

}  // namespace tandem

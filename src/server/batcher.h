// Dynamic batching for one served model: requests wait at most max_queue_delay to be merged
// along axis 0 into one ParallelPredictor::submit of up to max_batch_size items, and the outputs
// are split back per request.
//
// Which inputs merge: an input whose declared first dimension is symbolic is batched (its items
// are concatenated); every other input (the UNet's `timestep`) must be byte-for-byte equal across
// the merged requests, and the batched inputs' other dims must agree. A request that cannot merge
// with the oldest waiting one waits for a later batch of its own kind; one whose batch alone
// exceeds max_batch_size runs alone. A model with an output whose first dimension is not
// symbolic never merges (its outputs could not be split back).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "server/metrics.h"
#include "tandem/parallel.h"
#include "tandem/status.h"

namespace tandem::server {

// enqueue()'s refusal when the queue is full or the batcher is stopping (the server answers 503).
class QueueFull : public Error {
 public:
  explicit QueueFull(const std::string& message) : Error(ErrorCode::kRuntime, message) {}
};

struct BatchPolicy {
  int64_t max_batch_size = 0;  // < 2: no merging
  std::chrono::microseconds max_queue_delay{0};
  std::vector<int64_t> preferred_batch_sizes;  // ascending
  // Batches submitted and not yet answered. With merging, a small number lets requests gather
  // while the devices are busy (each batch is split across all devices anyway); without it, the
  // runner's own queue decides.
  size_t max_in_flight = 2;
  // Requests waiting to be batched; beyond it enqueue() refuses (the server answers 503).
  size_t max_queued = 1024;
};

class Batcher {
 public:
  Batcher(ParallelPredictor& predictor, std::vector<TensorInfo> inputs,
          std::vector<TensorInfo> outputs, BatchPolicy policy, ModelMetrics& metrics);
  ~Batcher();  // stop()
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  struct Ticket {
    std::future<std::vector<Tensor>> result;
    // Set by a caller that stopped waiting (its timeout): a request still queued is dropped.
    std::shared_ptr<std::atomic<bool>> cancelled;
  };
  // `inputs` in the model's input order, already checked against it. Throws QueueFull when the
  // queue is full or the batcher is stopping.
  Ticket enqueue(std::vector<Tensor> inputs);

  // Runs what is queued and in flight to the end, then stops the threads. Idempotent.
  void stop();

  bool merges() const { return merging_; }

 private:
  struct Pending;
  struct Batch;
  void form_loop();
  void complete_loop();
  void dispatch(std::vector<std::unique_ptr<Pending>> members);
  bool compatible(const Pending& head, const Pending& other) const;

  ParallelPredictor& predictor_;
  std::vector<TensorInfo> inputs_, outputs_;
  std::vector<bool> batched_;  // per input: its first dim is the batch
  BatchPolicy policy_;
  ModelMetrics& metrics_;
  bool merging_ = false;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::unique_ptr<Pending>> queue_;
  std::deque<std::unique_ptr<Batch>> in_flight_;
  size_t completing_ = 0;  // batches the completer took off in_flight_ and is finishing
  bool stopping_ = false;
  bool former_done_ = false;
  std::thread former_, completer_;
};

}  // namespace tandem::server

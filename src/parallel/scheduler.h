// The scheduler both engines share: which worker runs which shard, and the life of a request
// from admission to its answer. It owns
//  - admission: request ids, the queue capacity (back-pressure), no new work once stopping;
//  - the queues: one per worker plus a shared one (re-runs and work any worker may take), with
//    work stealing so an idle worker never waits behind a busy one;
//  - re-running the shard of a worker that died or hung (at most kMaxShardAttempts workers lost
//    per shard), and handing a dead worker's queue to the others;
//  - per-worker throughput (a moving average) and which workers may be planned for, from which
//    the next batch's split is computed;
//  - finishing requests: each is answered exactly once (value or error), with the counters of
//    ParallelStats kept on the way.
// An engine adds only where a shard runs and what a request carries: a worker process with
// shared-memory buffers (process_engine.cc) or a thread with its own Model (thread_engine.cc).
//
// Thread-safe: one mutex guards everything here; engines call in from callers' threads, a
// supervisor thread or worker threads. Promises are fulfilled outside the lock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "parallel/splitter.h"
#include "tandem/parallel.h"
#include "tandem/tensor.h"

namespace tandem::parallel {

using Clock = std::chrono::steady_clock;

// A shard that lost this many workers (crashed or hung while running it) fails its request:
// it is likely the input that kills them.
inline constexpr int kMaxShardAttempts = 3;

// What every request has; an engine derives its own (buffers, copies of the inputs).
struct RequestBase {
  virtual ~RequestBase() = default;
  uint64_t id = 0;
  Clock::time_point start;  // admission: the overhead counts everything after it
  std::vector<ShardPlan> shards;
  std::promise<std::vector<Tensor>> promise;

  // The scheduler's bookkeeping, under its lock (Scheduler::answered() reads it).
 private:
  friend class Scheduler;
  bool finished_ = false;
  bool active_ = false;  // admitted and counted in Scheduler::active_
  std::vector<bool> shard_done_;
  int remaining_ = 0;
  double max_compute_ms_ = 0;
};

struct ShardTask {
  std::shared_ptr<RequestBase> req;
  int shard = 0;
  int attempts = 0;  // workers lost while running it
  int kind = 0;      // the engine's own meaning (the process engine's shape queries)
};

class Scheduler {
 public:
  explicit Scheduler(size_t queue_capacity) : capacity_(queue_capacity) {}

  // Workers are known (after the engine built them): queues and speeds for `workers` of them.
  // Admission opens.
  void open(size_t workers);
  // No new admissions; queued work still runs. Wakes every waiter.
  void stop();
  bool stopping() const;
  // Blocks until every admitted request has been answered.
  void wait_idle();
  bool idle() const;

  // Admission, from the caller's thread: gives the request its id and start time and counts it,
  // or throws (not built, stopping, queue full). `refusal`, when not empty, is a reason the
  // engine cannot take work now (every device down); it is thrown as is.
  void admit(const std::shared_ptr<RequestBase>& r, const std::string& refusal = {});
  // An admitted request that never reached a queue (its inputs were refused): uncounted again,
  // counted as failed; the caller throws.
  void withdraw(RequestBase& r);
  // Throughputs to split the next batch with: a usable worker's measured speed (the mean of the
  // measured ones while it has none), 0 for one that may not be planned for.
  std::vector<double> split_speeds() const;
  // Whether a worker may be given new shards (process engine: serving, or coming back while
  // none serves). All are usable until said otherwise.
  void set_usable(int worker, bool usable);

  // Queues.
  void enqueue(int worker, ShardTask t);
  void enqueue_shared(ShardTask t);  // at the front: re-runs and shape queries go first
  // The next live task for `worker`: its own queue, then the shared one, then the back of the
  // most loaded other queue. Tasks of answered requests are dropped on the way.
  bool take(int worker, ShardTask& t);
  // As take(), but waits for a task; false once stopping with nothing admitted (the worker
  // thread exits).
  bool wait_take(int worker, ShardTask& t);
  // `worker` died: its queued tasks go to the shared queue.
  void release_queue(int worker);
  // The task `t` was running on a worker that died: queued again at the front (counted in
  // shards_rerun), or false when it has lost kMaxShardAttempts workers (the engine fails it).
  bool rerun(ShardTask t);
  // Drops every queued task (every device is down; the engine fails what is active).
  void clear_queues();

  // A shard's outputs are in: counts the worker's items and time, updates its speed. True for
  // the request's last shard, when the engine gathers and calls complete(); false for an
  // answered request or a shard already done (a re-run that raced its original).
  bool shard_done(RequestBase& r, int shard, int worker, double compute_ms);
  // Answers the request (once; later calls do nothing).
  void complete(RequestBase& r, std::vector<Tensor> outputs);
  // `code`: the kind of Error the caller gets (kInvalidArgument when the request itself was bad).
  void fail(RequestBase& r, const std::string& why, ErrorCode code = ErrorCode::kRuntime);
  // Fails every admitted request with "request <id>: " followed by `why`.
  void fail_all(const std::string& why);
  // Whether `r` has been answered (its other shards need not run).
  bool answered(const RequestBase& r) const;

  // Counters and per-worker items, time and speed into `s` (devices already sized by the engine).
  void fill_stats(ParallelStats& s) const;
  double speed(int worker) const;

 private:
  struct Load {
    std::deque<ShardTask> queue;
    double speed = 0;  // items/s, moving average; 0 = not measured yet
    double busy_ms = 0;
    int64_t items = 0;
    bool usable = true;
  };
  bool pop_live(std::deque<ShardTask>& q, bool from_back, ShardTask& t);
  bool take_locked(int worker, ShardTask& t);
  // Marks `r` answered and uncounts it; false when it was answered already. Under mu_.
  bool retire_locked(RequestBase& r, bool ok);

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, idle_cv_;
  std::vector<Load> workers_;
  std::deque<ShardTask> shared_;
  std::map<uint64_t, std::shared_ptr<RequestBase>> active_;
  uint64_t next_id_ = 1;
  bool open_ = false, stopping_ = false;
  int64_t requests_ = 0, failed_ = 0, rerun_ = 0;
  double overhead_last_ = 0, overhead_total_ = 0;
};

}  // namespace tandem::parallel

#include "parallel/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace tandem::parallel {

void Scheduler::open(size_t workers) {
  std::lock_guard<std::mutex> lock(mu_);
  workers_.assign(workers, Load{});
  open_ = true;
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  idle_cv_.notify_all();
}

bool Scheduler::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

void Scheduler::wait_idle() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return active_.empty(); });
}

bool Scheduler::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_.empty();
}

void Scheduler::admit(const std::shared_ptr<RequestBase>& r, const std::string& refusal) {
  std::lock_guard<std::mutex> lock(mu_);
  TANDEM_CHECK(open_, ErrorCode::kInvalidArgument, "predict before build(): call build() first");
  TANDEM_CHECK(!stopping_, ErrorCode::kInvalidArgument,
               "the predictor is finalized; create a new one");
  TANDEM_CHECK(refusal.empty(), ErrorCode::kRuntime, "{}", refusal);
  TANDEM_CHECK(active_.size() < capacity_, ErrorCode::kRuntime,
               "request queue is full ({} requests in flight); wait for some to finish or raise "
               "queue_capacity",
               active_.size());
  r->id = next_id_++;
  r->start = Clock::now();
  r->active_ = true;
  active_[r->id] = r;
}

void Scheduler::withdraw(RequestBase& r) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!retire_locked(r, false)) return;
  }
  idle_cv_.notify_all();
  work_cv_.notify_all();
}

std::vector<double> Scheduler::split_speeds() const {
  std::lock_guard<std::mutex> lock(mu_);
  double known = 0;
  int n_known = 0;
  for (const Load& w : workers_)
    if (w.speed > 0) {
      known += w.speed;
      ++n_known;
    }
  const double fallback = n_known ? known / n_known : 1.0;
  std::vector<double> out;
  for (const Load& w : workers_) out.push_back(w.usable ? (w.speed > 0 ? w.speed : fallback) : 0);
  return out;
}

void Scheduler::set_usable(int worker, bool usable) {
  std::lock_guard<std::mutex> lock(mu_);
  workers_.at(worker).usable = usable;
}

void Scheduler::enqueue(int worker, ShardTask t) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers_.at(worker).queue.push_back(std::move(t));
  }
  work_cv_.notify_all();
}

void Scheduler::enqueue_shared(ShardTask t) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shared_.push_front(std::move(t));
  }
  work_cv_.notify_all();
}

bool Scheduler::pop_live(std::deque<ShardTask>& q, bool from_back, ShardTask& t) {
  while (!q.empty()) {
    ShardTask cand = std::move(from_back ? q.back() : q.front());
    if (from_back)
      q.pop_back();
    else
      q.pop_front();
    if (!cand.req->finished_) {
      t = std::move(cand);
      return true;
    }
  }
  return false;
}

bool Scheduler::take_locked(int worker, ShardTask& t) {
  Load& own = workers_.at(worker);
  if (pop_live(own.queue, false, t) || pop_live(shared_, false, t)) return true;
  Load* victim = nullptr;
  for (Load& o : workers_)
    if (&o != &own && !o.queue.empty() && (!victim || o.queue.size() > victim->queue.size()))
      victim = &o;
  return victim && pop_live(victim->queue, true, t);
}

bool Scheduler::take(int worker, ShardTask& t) {
  std::lock_guard<std::mutex> lock(mu_);
  return take_locked(worker, t);
}

bool Scheduler::wait_take(int worker, ShardTask& t) {
  std::unique_lock<std::mutex> lock(mu_);
  bool got = false;
  work_cv_.wait(lock, [&] {
    got = take_locked(worker, t);
    return got || (stopping_ && active_.empty());
  });
  return got;
}

void Scheduler::release_queue(int worker) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Load& w = workers_.at(worker);
    // In order, ahead of other shared work: these were due first.
    while (!w.queue.empty()) {
      shared_.push_front(std::move(w.queue.back()));
      w.queue.pop_back();
    }
  }
  work_cv_.notify_all();
}

bool Scheduler::rerun(ShardTask t) {
  if (++t.attempts >= kMaxShardAttempts) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (t.req->finished_) return true;  // nothing to re-run: answered meanwhile
    ++rerun_;
    shared_.push_front(std::move(t));
  }
  work_cv_.notify_all();
  return true;
}

void Scheduler::clear_queues() {
  std::lock_guard<std::mutex> lock(mu_);
  shared_.clear();
  for (Load& w : workers_) w.queue.clear();
}

bool Scheduler::shard_done(RequestBase& r, int shard, int worker, double compute_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (r.finished_) return false;
  if (r.shard_done_.empty()) {
    r.shard_done_.assign(r.shards.size(), false);
    r.remaining_ = static_cast<int>(r.shards.size());
  }
  if (r.shard_done_.at(shard)) return false;
  r.shard_done_[shard] = true;
  Load& w = workers_.at(worker);
  const int64_t items = r.shards[shard].count;
  w.items += items;
  w.busy_ms += compute_ms;
  if (compute_ms > 0) {
    const double inst = items * 1000.0 / compute_ms;
    w.speed = w.speed > 0 ? 0.7 * w.speed + 0.3 * inst : inst;
  }
  r.max_compute_ms_ = std::max(r.max_compute_ms_, compute_ms);
  return --r.remaining_ == 0;
}

bool Scheduler::retire_locked(RequestBase& r, bool ok) {
  if (r.finished_) return false;
  r.finished_ = true;
  if (r.active_) {
    r.active_ = false;
    active_.erase(r.id);
  }
  if (!ok) {
    ++failed_;
    return true;
  }
  ++requests_;
  const double wall = std::chrono::duration<double, std::milli>(Clock::now() - r.start).count();
  overhead_last_ = std::max(0.0, wall - r.max_compute_ms_);
  overhead_total_ += overhead_last_;
  return true;
}

void Scheduler::complete(RequestBase& r, std::vector<Tensor> outputs) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!retire_locked(r, true)) return;
  }
  // Counted before the caller can see the answer: stats() right after get() includes it.
  r.promise.set_value(std::move(outputs));
  idle_cv_.notify_all();
  work_cv_.notify_all();
}

void Scheduler::fail(RequestBase& r, const std::string& why, ErrorCode code) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!retire_locked(r, false)) return;
  }
  r.promise.set_exception(std::make_exception_ptr(Error(code, why)));
  idle_cv_.notify_all();
  work_cv_.notify_all();
}

void Scheduler::fail_all(const std::string& why) {
  std::map<uint64_t, std::shared_ptr<RequestBase>> active;
  {
    std::lock_guard<std::mutex> lock(mu_);
    active = active_;
  }
  for (auto& [id, r] : active) fail(*r, fmt::format("request {}: {}", id, why));
}

void Scheduler::fill_stats(ParallelStats& s) const {
  std::lock_guard<std::mutex> lock(mu_);
  s.requests = requests_;
  s.failed_requests = failed_;
  s.shards_rerun = rerun_;
  s.overhead_ms_last = overhead_last_;
  s.overhead_ms_total = overhead_total_;
  for (size_t i = 0; i < workers_.size() && i < s.devices.size(); ++i) {
    s.devices[i].items = workers_[i].items;
    s.devices[i].busy_ms = workers_[i].busy_ms;
    s.devices[i].items_per_s = workers_[i].speed;
  }
}

bool Scheduler::answered(const RequestBase& r) const {
  std::lock_guard<std::mutex> lock(mu_);
  return r.finished_;
}

double Scheduler::speed(int worker) const {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_.at(worker).speed;
}

}  // namespace tandem::parallel

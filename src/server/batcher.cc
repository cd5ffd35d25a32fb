#include "server/batcher.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace tandem::server {

using Clock = std::chrono::steady_clock;

struct Batcher::Pending {
  std::vector<Tensor> inputs;
  int64_t batch = -1;  // items along axis 0 of the batched inputs; -1: cannot merge
  Clock::time_point enqueued;
  std::promise<std::vector<Tensor>> promise;
  std::shared_ptr<std::atomic<bool>> cancelled;
};

struct Batcher::Batch {
  std::vector<std::unique_ptr<Pending>> members;
  int64_t items = 0;
  Clock::time_point started;
  std::future<std::vector<Tensor>> result;
};

namespace {

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

Batcher::Batcher(ParallelPredictor& predictor, std::vector<TensorInfo> inputs,
                 std::vector<TensorInfo> outputs, BatchPolicy policy, ModelMetrics& metrics)
    : predictor_(predictor),
      inputs_(std::move(inputs)),
      outputs_(std::move(outputs)),
      policy_(std::move(policy)),
      metrics_(metrics) {
  bool any_batched = false;
  for (const TensorInfo& info : inputs_) {
    bool b = !info.shape.empty() && info.shape[0] < 0;
    batched_.push_back(b);
    any_batched = any_batched || b;
  }
  bool outputs_split = std::all_of(outputs_.begin(), outputs_.end(), [](const TensorInfo& info) {
    return !info.shape.empty() && info.shape[0] < 0;
  });
  merging_ = policy_.max_batch_size >= 2 && any_batched && outputs_split;
  if (policy_.max_in_flight == 0) policy_.max_in_flight = 1;
  former_ = std::thread([this] { form_loop(); });
  completer_ = std::thread([this] { complete_loop(); });
}

Batcher::~Batcher() {
  stop();
}

void Batcher::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (former_.joinable()) former_.join();
  if (completer_.joinable()) completer_.join();
}

Batcher::Ticket Batcher::enqueue(std::vector<Tensor> inputs) {
  auto p = std::make_unique<Pending>();
  p->inputs = std::move(inputs);
  p->enqueued = Clock::now();
  p->cancelled = std::make_shared<std::atomic<bool>>(false);
  for (size_t i = 0; i < p->inputs.size() && i < batched_.size(); ++i) {
    if (!batched_[i]) continue;
    const Tensor& t = p->inputs[i];
    if (t.rank() == 0 || (p->batch >= 0 && t.dim(0) != p->batch)) {
      p->batch = -1;
      break;
    }
    p->batch = t.dim(0);
  }
  if (!merging_) p->batch = -1;
  Ticket ticket{p->promise.get_future(), p->cancelled};
  {
    std::lock_guard lock(mutex_);
    if (stopping_) throw QueueFull("the server is shutting down");
    if (queue_.size() >= policy_.max_queued)
      throw QueueFull(fmt::format("{} requests are already waiting for this model", queue_.size()));
    queue_.push_back(std::move(p));
  }
  changed_.notify_all();
  return ticket;
}

bool Batcher::compatible(const Pending& head, const Pending& other) const {
  if (other.batch <= 0) return false;
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const Tensor& a = head.inputs[i];
    const Tensor& b = other.inputs[i];
    if (a.dtype() != b.dtype() || a.rank() != b.rank()) return false;
    if (batched_[i]) {
      if (!std::equal(a.shape().begin() + 1, a.shape().end(), b.shape().begin() + 1)) return false;
    } else {
      if (a.shape() != b.shape() || std::memcmp(a.raw(), b.raw(), a.nbytes()) != 0) return false;
    }
  }
  return true;
}

void Batcher::form_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] {
      return (stopping_ && queue_.empty()) ||
             (!queue_.empty() && in_flight_.size() + completing_ < policy_.max_in_flight);
    });
    if (queue_.empty()) break;
    Pending* head = queue_.front().get();
    std::vector<size_t> chosen{0};
    if (merging_ && head->batch > 0 && head->batch < policy_.max_batch_size &&
        !head->cancelled->load()) {
      const auto deadline = head->enqueued + policy_.max_queue_delay;
      for (;;) {
        // The oldest request leads; later ones join in arrival order while they fit.
        int64_t total = head->batch;
        chosen.assign(1, 0);
        for (size_t i = 1; i < queue_.size() && total < policy_.max_batch_size; ++i) {
          const Pending& p = *queue_[i];
          if (p.cancelled->load() || !compatible(*head, p)) continue;
          if (total + p.batch > policy_.max_batch_size) continue;
          total += p.batch;
          chosen.push_back(i);
        }
        const bool full = total >= policy_.max_batch_size;
        const bool preferred = std::binary_search(policy_.preferred_batch_sizes.begin(),
                                                  policy_.preferred_batch_sizes.end(), total);
        if (full || preferred || stopping_ || Clock::now() >= deadline) break;
        changed_.wait_until(lock, deadline);
      }
    }
    std::vector<std::unique_ptr<Pending>> members;
    for (size_t i : chosen) members.push_back(std::move(queue_[i]));
    for (auto it = chosen.rbegin(); it != chosen.rend(); ++it)
      queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(*it));
    lock.unlock();
    dispatch(std::move(members));
    lock.lock();
  }
  former_done_ = true;
  lock.unlock();
  changed_.notify_all();
}

void Batcher::dispatch(std::vector<std::unique_ptr<Pending>> members) {
  // A caller that gave up (its timeout) while queued is not run.
  std::vector<std::unique_ptr<Pending>> live;
  for (auto& m : members) {
    if (m->cancelled->load())
      m->promise.set_exception(std::make_exception_ptr(
          Error(ErrorCode::kRuntime, "the request timed out before it ran")));
    else
      live.push_back(std::move(m));
  }
  if (live.empty()) return;
  auto batch = std::make_unique<Batch>();
  batch->members = std::move(live);
  batch->started = Clock::now();
  for (const auto& m : batch->members) {
    metrics_.queue_seconds.observe(seconds(batch->started - m->enqueued));
    batch->items += std::max<int64_t>(m->batch, 1);
  }
  try {
    if (batch->members.size() == 1) {
      batch->result = predictor_.submit(batch->members[0]->inputs);
    } else {
      const Pending& head = *batch->members[0];
      int64_t total = 0;
      for (const auto& m : batch->members) total += m->batch;
      batch->items = total;
      std::vector<Tensor> merged;
      for (size_t i = 0; i < inputs_.size(); ++i) {
        const Tensor& first = head.inputs[i];
        if (!batched_[i]) {
          merged.push_back(first);
          continue;
        }
        Shape shape = first.shape();
        shape[0] = total;
        Tensor t(first.dtype(), shape, first.name());
        auto* dst = static_cast<uint8_t*>(t.raw());
        for (const auto& m : batch->members) {
          const Tensor& part = m->inputs[i];
          std::memcpy(dst, part.raw(), part.nbytes());
          dst += part.nbytes();
        }
        merged.push_back(std::move(t));
      }
      batch->result = predictor_.submit(merged);
    }
  } catch (...) {
    auto error = std::current_exception();
    for (auto& m : batch->members) m->promise.set_exception(error);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    in_flight_.push_back(std::move(batch));
  }
  changed_.notify_all();
}

void Batcher::complete_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return !in_flight_.empty() || former_done_; });
    if (in_flight_.empty()) break;
    std::unique_ptr<Batch> batch = std::move(in_flight_.front());
    in_flight_.pop_front();
    ++completing_;
    lock.unlock();

    std::vector<Tensor> outputs;
    std::exception_ptr error;
    try {
      outputs = batch->result.get();
    } catch (...) {
      error = std::current_exception();
    }
    metrics_.compute_seconds.observe(seconds(Clock::now() - batch->started));
    metrics_.batch_size.observe(static_cast<double>(batch->items));
    ++metrics_.batches;
    if (!error && batch->members.size() > 1) {
      // Split every output back along axis 0, in the members' order.
      std::vector<std::vector<Tensor>> parts(batch->members.size());
      try {
        for (const Tensor& out : outputs) {
          TANDEM_CHECK(out.rank() >= 1 && out.dim(0) == batch->items, ErrorCode::kRuntime,
                       "output '{}' of the merged batch has shape {}, not {} items along axis 0",
                       out.name(), shape_str(out.shape()), batch->items);
          const size_t item_bytes = out.nbytes() / static_cast<size_t>(batch->items);
          const auto* src = static_cast<const uint8_t*>(out.raw());
          for (size_t k = 0; k < batch->members.size(); ++k) {
            Shape shape = out.shape();
            shape[0] = batch->members[k]->batch;
            parts[k].push_back(Tensor::copy_of(out.dtype(), shape, src, out.name()));
            src += item_bytes * static_cast<size_t>(shape[0]);
          }
        }
        for (size_t k = 0; k < batch->members.size(); ++k)
          batch->members[k]->promise.set_value(std::move(parts[k]));
      } catch (...) {
        error = std::current_exception();
      }
    } else if (!error) {
      batch->members[0]->promise.set_value(std::move(outputs));
    }
    if (error) {
      for (auto& m : batch->members) {
        try {
          m->promise.set_exception(error);
        } catch (const std::future_error&) {
          // Already answered (the split failed after some members were): nothing to add.
        }
      }
    }
    lock.lock();
    --completing_;
    changed_.notify_all();
  }
}

}  // namespace tandem::server

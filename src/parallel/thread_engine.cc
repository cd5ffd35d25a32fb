// The thread engine (--mode threads): one Model per worker inside this process, one thread per
// worker — MindSpore Lite's ModelParallelRunner shape. Same splitting as the process engine;
// shards are views of the request's own copy of the inputs and each worker copies its output
// shard into the gathered tensors. No fault isolation: a crash takes the process down.
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "parallel/batch.h"
#include "parallel/device.h"
#include "parallel/engine.h"

namespace tandem::parallel {

namespace {

using Clock = std::chrono::steady_clock;

struct ThreadRequest {
  uint64_t id = 0;
  std::vector<Tensor> inputs;  // the request's own copies, padded for a fixed batch
  std::vector<bool> batched;
  int64_t batch = 0;
  std::vector<ShardPlan> shards;
  std::vector<bool> out_batched;
  std::mutex mu;
  std::vector<std::vector<Tensor>> shard_outputs;  // per shard, gathered when the last ends
  int remaining = 0;
  double max_compute_ms = 0;
  bool failed = false;
  std::promise<std::vector<Tensor>> promise;
  Clock::time_point start;
};

struct Job {
  std::shared_ptr<ThreadRequest> req;
  int shard = 0;
};

struct ThreadWorker {
  int index = 0;
  DeviceSpec device;
  int threads = 1;
  Model model;
  std::deque<Job> queue;
  std::thread thread;
  double speed = 0, busy_ms = 0;
  int64_t items = 0;
};

class ThreadEngine : public ParallelPredictor::Engine {
 public:
  explicit ThreadEngine(ParallelOptions o) : options_(std::move(o)) {}
  ~ThreadEngine() override { finalize(); }

  void build() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      TANDEM_CHECK(!finalized_, ErrorCode::kInvalidArgument,
                   "build() after finalize(): create a new predictor");
      if (built_) return;  // built already (e.g. by entering a `with` block): nothing to do
    }
    for (const WorkerSlot& slot :
         plan_workers(options_.devices, options_.core_lists, options_.workers_per_device)) {
      auto w = std::make_unique<ThreadWorker>();
      w->index = slot.index;
      w->device = slot.device;
      w->threads = slot.threads;
      workers_.push_back(std::move(w));
    }
    // Build every model at once.
    std::vector<std::string> errors(workers_.size());
    std::vector<std::thread> builders;
    for (auto& w : workers_) {
      builders.emplace_back([&, wp = w.get()] {
        try {
          Context ctx;
          ctx.device = wp->device.name;
          ctx.thread_num = wp->threads;
          ctx.max_tensor_bytes = options_.max_tensor_bytes;
          ctx.max_model_bytes = options_.max_model_bytes;
          ctx.core_list = wp->device.cores;
          wp->model = Model::build_from_file(options_.model_path, ctx, options_.input_shapes);
        } catch (const std::exception& e) {
          errors[wp->index] = e.what();
        }
      });
    }
    for (auto& t : builders) t.join();
    std::string msg;
    int failed = 0;
    for (auto& w : workers_)
      if (!errors[w->index].empty()) {
        ++failed;
        msg += fmt::format("\n  {} (worker {}): {}", w->device.name, w->index, errors[w->index]);
      }
    if (failed) {
      workers_.clear();
      raise(ErrorCode::kRuntime, "build failed on {} workers:{}", failed, msg);
    }
    for (auto& w : workers_)
      if (options_.verbose) std::printf("Success to build model %d\n", w->index);
    inputs_ = workers_[0]->model.inputs();
    outputs_ = workers_[0]->model.outputs();
    for (auto& w : workers_) {
      DeviceStats d;
      d.device = w->device.name;
      d.worker = w->index;
      stats_.devices.push_back(d);
    }
    built_ = true;
    for (auto& w : workers_) w->thread = std::thread([this, wp = w.get()] { loop(*wp); });
  }

  std::future<std::vector<Tensor>> submit(const std::vector<Tensor>& inputs) override {
    auto r = std::make_shared<ThreadRequest>();
    r->start = Clock::now();  // the overhead counts copying the inputs too
    std::vector<double> speeds;
    {
      std::lock_guard<std::mutex> lock(mu_);
      TANDEM_CHECK(built_, ErrorCode::kInvalidArgument,
                   "predict before build(): call build() first");
      TANDEM_CHECK(!stopping_, ErrorCode::kInvalidArgument,
                   "the predictor is finalized; create a new one");
      TANDEM_CHECK(admitted_ < options_.queue_capacity, ErrorCode::kRuntime,
                   "request queue is full ({} requests in flight); wait for some to finish or "
                   "raise queue_capacity",
                   admitted_);
      ++admitted_;
      r->id = next_id_++;
      for (auto& w : workers_) speeds.push_back(w->speed > 0 ? w->speed : 1.0);
    }
    try {
      BatchedInputs in = analyse_inputs(inputs_, inputs);
      r->batched = in.batched;
      r->batch = in.batch;
      r->shards = split_batch(in.batch, speeds, in.fixed_batch);
      r->out_batched = batched_outputs(outputs_, in.fixed_batch);
      int64_t padded = r->shards.back().begin + r->shards.back().count;
      for (size_t i = 0; i < in.ordered.size(); ++i) {
        const Tensor& t = *in.ordered[i];
        if (!in.batched[i] || padded == in.batch) {
          r->inputs.push_back(t.clone());
          continue;
        }
        Shape s = t.shape();
        s[0] = padded;
        Tensor p(t.dtype(), s, t.name());
        size_t row = t.nbytes() / static_cast<size_t>(t.dim(0));
        std::memcpy(p.raw(), t.raw(), t.nbytes());
        for (int64_t k = in.batch; k < padded; ++k)
          std::memcpy(p.data<uint8_t>() + row * k, t.data<uint8_t>() + row * (in.batch - 1), row);
        r->inputs.push_back(std::move(p));
      }
      for (size_t i = 0; i < r->inputs.size(); ++i) r->inputs[i].set_name(inputs_[i].name);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      --admitted_;
      ++stats_.failed_requests;
      throw;
    }
    r->remaining = static_cast<int>(r->shards.size());
    r->shard_outputs.resize(r->shards.size());
    auto future = r->promise.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t s = 0; s < r->shards.size(); ++s)
        workers_[r->shards[s].worker]->queue.push_back({r, static_cast<int>(s)});
    }
    cv_.notify_all();
    return future;
  }

  void finalize() override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (finalized_) return;
      finalized_ = stopping_ = true;
      done_cv_.wait(lock, [&] { return admitted_ == 0; });
    }
    cv_.notify_all();
    for (auto& w : workers_)
      if (w->thread.joinable()) w->thread.join();
    if (options_.verbose)
      for (auto& w : workers_)
        std::printf("Receive exit message, worker %d (%s) start to exit\n", w->index,
                    w->device.name.c_str());
  }

  ParallelStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    ParallelStats s = stats_;
    for (size_t i = 0; i < workers_.size() && i < s.devices.size(); ++i) {
      s.devices[i].items = workers_[i]->items;
      s.devices[i].busy_ms = workers_[i]->busy_ms;
      s.devices[i].items_per_s = workers_[i]->speed;
    }
    return s;
  }
  std::vector<TensorInfo> inputs() const override { return inputs_; }
  std::vector<TensorInfo> outputs() const override { return outputs_; }

 private:
  bool next_job(ThreadWorker& w, Job& job) {
    if (!w.queue.empty()) {
      job = w.queue.front();
      w.queue.pop_front();
      return true;
    }
    ThreadWorker* victim = nullptr;
    for (auto& o : workers_)
      if (!o->queue.empty() && (!victim || o->queue.size() > victim->queue.size()))
        victim = o.get();
    if (!victim) return false;
    job = victim->queue.back();
    victim->queue.pop_back();
    return true;
  }

  void loop(ThreadWorker& w) {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return next_job(w, job) || (stopping_ && admitted_ == 0); });
        if (!job.req) return;
      }
      run(w, job);
    }
  }

  void run(ThreadWorker& w, const Job& job) {
    ThreadRequest& r = *job.req;
    {
      std::lock_guard<std::mutex> lock(r.mu);
      if (r.failed) return shard_ended(r);
    }
    const ShardPlan& shard = r.shards[job.shard];
    std::vector<Tensor> views;
    for (size_t i = 0; i < r.inputs.size(); ++i) {
      const Tensor& t = r.inputs[i];
      if (!r.batched[i]) {
        views.push_back(t);
        continue;
      }
      Shape s = t.shape();
      s[0] = shard.count;
      size_t row = t.nbytes() / static_cast<size_t>(t.dim(0));
      views.push_back(Tensor::borrow(
          t.dtype(), s, const_cast<uint8_t*>(t.data<uint8_t>()) + row * shard.begin, t.name()));
    }
    auto start = Clock::now();
    std::vector<Tensor> outs;
    std::string error;
    try {
      outs = w.model.predict(views);
    } catch (const std::exception& e) {
      error = e.what();
    }
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    std::lock_guard<std::mutex> lock(r.mu);
    if (!error.empty() && !r.failed) {
      r.failed = true;
      r.promise.set_exception(std::make_exception_ptr(
          Error(ErrorCode::kRuntime, fmt::format("request {}: device {} (worker {}): {}", r.id,
                                                 w.device.name, w.index, error))));
    }
    if (!r.failed) {
      {
        std::lock_guard<std::mutex> g(mu_);
        w.items += shard.count;
        w.busy_ms += ms;
        double inst = shard.count * 1000.0 / std::max(ms, 1e-3);
        w.speed = w.speed > 0 ? 0.7 * w.speed + 0.3 * inst : inst;
      }
      r.max_compute_ms = std::max(r.max_compute_ms, ms);
      r.shard_outputs[job.shard] = std::move(outs);
    }
    shard_ended(r);
  }

  // Every shard ends exactly once (computed, failed or skipped); the last one retires the
  // request. Called with r.mu held.
  void shard_ended(ThreadRequest& r) {
    if (--r.remaining > 0) return;
    if (!r.failed) {
      // The same checked gather as the process engine's: shards whose outputs disagree (a
      // NonZero model) are an error, never a copy past the end of a buffer.
      try {
        std::vector<std::vector<ShardOutput>> per_shard(r.shards.size());
        for (size_t s = 0; s < r.shards.size(); ++s)
          for (const Tensor& t : r.shard_outputs[s])
            per_shard[s].push_back({t.dtype(), t.shape(), t.data<uint8_t>()});
        r.promise.set_value(gather_outputs(outputs_, r.out_batched, r.shards, r.batch, per_shard));
      } catch (const std::exception& e) {
        r.failed = true;
        r.promise.set_exception(std::make_exception_ptr(
            Error(ErrorCode::kRuntime, fmt::format("request {}: {}", r.id, e.what()))));
      }
      r.shard_outputs.clear();
    }
    std::lock_guard<std::mutex> lock(mu_);
    --admitted_;
    if (r.failed) {
      ++stats_.failed_requests;
    } else {
      ++stats_.requests;
      stats_.overhead_ms_last =
          std::max(0.0, std::chrono::duration<double, std::milli>(Clock::now() - r.start).count() -
                            r.max_compute_ms);
      stats_.overhead_ms_total += stats_.overhead_ms_last;
    }
    done_cv_.notify_all();
    cv_.notify_all();
  }

  ParallelOptions options_;
  std::vector<std::unique_ptr<ThreadWorker>> workers_;
  std::vector<TensorInfo> inputs_, outputs_;
  mutable std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  size_t admitted_ = 0;
  uint64_t next_id_ = 1;
  bool built_ = false, stopping_ = false, finalized_ = false;
  ParallelStats stats_;
};

}  // namespace

std::unique_ptr<ParallelPredictor::Engine> make_thread_engine(ParallelOptions options) {
  return std::make_unique<ThreadEngine>(std::move(options));
}

}  // namespace tandem::parallel

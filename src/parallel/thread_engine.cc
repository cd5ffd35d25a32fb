// The thread engine (--mode threads): one Model per worker inside this process, one thread per
// worker — MindSpore Lite's ModelParallelRunner shape. Same splitting as the process engine;
// shards are views of the request's own copy of the inputs, and the thread that ends a request's
// last shard gathers it. Queues, stealing, admission and answers are the shared scheduler's
// (scheduler.h), as in the process engine. No fault isolation: a crash takes the process down.
#include <cstring>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "parallel/batch.h"
#include "parallel/device.h"
#include "parallel/engine.h"
#include "parallel/scheduler.h"

namespace tandem::parallel {

namespace {

struct ThreadRequest : RequestBase {
  std::vector<Tensor> inputs;  // the request's own copies, padded for a fixed batch
  std::vector<bool> batched;
  int64_t batch = 0;
  std::vector<bool> out_batched;
  // Per shard, written by the thread that ran it; the scheduler's lock orders these writes
  // before the gather by whichever thread ends the last shard.
  std::vector<std::vector<Tensor>> shard_outputs;
};

struct ThreadWorker {
  int index = 0;
  DeviceSpec device;
  int threads = 1;
  Model model;
  std::thread thread;
};

class ThreadEngine : public ParallelPredictor::Engine {
 public:
  explicit ThreadEngine(ParallelOptions o)
      : options_(std::move(o)), scheduler_(options_.queue_capacity) {}
  ~ThreadEngine() override { finalize(); }

  void build() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      TANDEM_CHECK(!finalized_, ErrorCode::kInvalidArgument,
                   "build() after finalize(): create a new predictor");
      if (built_) return;  // built already (e.g. by entering a `with` block): nothing to do
    }
    // Empty here: a failed build leaves no workers behind.
    workers_ = workers_for<ThreadWorker>(
        plan_workers(options_.devices, options_.core_lists, options_.workers_per_device));
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
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& w : workers_) {
        DeviceStats d;
        d.device = w->device.name;
        d.worker = w->index;
        devices_.push_back(d);
      }
      built_ = true;
    }
    scheduler_.open(workers_.size());
    for (auto& w : workers_) w->thread = std::thread([this, wp = w.get()] { loop(*wp); });
  }

  std::future<std::vector<Tensor>> submit(const std::vector<Tensor>& inputs) override {
    auto r = std::make_shared<ThreadRequest>();
    scheduler_.admit(r);  // the overhead counts copying the inputs too
    try {
      BatchedInputs in = analyse_inputs(inputs_, inputs);
      r->batched = in.batched;
      r->batch = in.batch;
      r->shards = split_batch(in.batch, scheduler_.split_speeds(), in.fixed_batch);
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
      scheduler_.withdraw(*r);
      throw;
    }
    r->shard_outputs.resize(r->shards.size());
    auto future = r->promise.get_future();
    for (size_t s = 0; s < r->shards.size(); ++s)
      scheduler_.enqueue(r->shards[s].worker, {r, static_cast<int>(s), 0, 0});
    return future;
  }

  void finalize() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finalized_) return;
      finalized_ = true;
    }
    // Requests in flight finish first; then the worker threads see stop and leave.
    scheduler_.stop();
    scheduler_.wait_idle();
    for (auto& w : workers_)
      if (w->thread.joinable()) w->thread.join();
    if (options_.verbose)
      for (auto& w : workers_)
        std::printf("Receive exit message, worker %d (%s) start to exit\n", w->index,
                    w->device.name.c_str());
  }

  ParallelStats stats() const override {
    ParallelStats s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      s.devices = devices_;
    }
    scheduler_.fill_stats(s);
    return s;
  }
  std::vector<TensorInfo> inputs() const override { return inputs_; }
  std::vector<TensorInfo> outputs() const override { return outputs_; }

 private:
  void loop(ThreadWorker& w) {
    ShardTask task;
    while (scheduler_.wait_take(w.index, task)) {
      run(w, task);
      task = {};
    }
  }

  void run(ThreadWorker& w, const ShardTask& task) {
    auto& r = static_cast<ThreadRequest&>(*task.req);
    if (scheduler_.answered(r)) return;  // another shard failed it meanwhile
    const ShardPlan& shard = r.shards[task.shard];
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
    try {
      outs = w.model.predict(views);
    } catch (const std::exception& e) {
      // An error in a thread is the request's, not the worker's: a crash would have taken the
      // whole process (no fault isolation in this mode), so the worker goes on serving.
      return scheduler_.fail(r,
                             fmt::format("request {}: device {} (worker {}): {}", r.id,
                                         w.device.name, w.index, e.what()),
                             error_code_of(e));
    }
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    r.shard_outputs[task.shard] = std::move(outs);
    if (!scheduler_.shard_done(r, task.shard, w.index, ms)) return;
    // The last shard: the same checked gather as the process engine's, so shards whose outputs
    // disagree (a NonZero model) are an error, never a copy past the end of a buffer.
    try {
      std::vector<std::vector<ShardOutput>> per_shard(r.shards.size());
      for (size_t s = 0; s < r.shards.size(); ++s)
        for (const Tensor& t : r.shard_outputs[s])
          per_shard[s].push_back({t.dtype(), t.shape(), t.data<uint8_t>()});
      std::vector<Tensor> gathered =
          gather_outputs(outputs_, r.out_batched, r.shards, r.batch, per_shard);
      r.shard_outputs.clear();
      scheduler_.complete(r, std::move(gathered));
    } catch (const std::exception& e) {
      r.shard_outputs.clear();
      scheduler_.fail(r, fmt::format("request {}: {}", r.id, e.what()), error_code_of(e));
    }
  }

  ParallelOptions options_;
  Scheduler scheduler_;
  std::vector<std::unique_ptr<ThreadWorker>> workers_;
  std::vector<TensorInfo> inputs_, outputs_;
  mutable std::mutex mu_;  // build state and the device list
  bool built_ = false, finalized_ = false;
  std::vector<DeviceStats> devices_;
};

}  // namespace

std::unique_ptr<ParallelPredictor::Engine> make_thread_engine(ParallelOptions options) {
  return std::make_unique<ThreadEngine>(std::move(options));
}

}  // namespace tandem::parallel

// The process engine: one `tandem worker` process per worker and a supervisor thread that owns
// all of them. The supervisor polls every worker's socket and pidfd plus an eventfd for new
// requests, sends shards, takes replies, enforces deadlines, restarts the dead (under the fault
// policy's rate limit) and re-runs their shards elsewhere. Callers only touch the request queue
// (under a mutex).
//
// Workers are not trusted: every reply is checked against what the worker owes (request, shard,
// output count, dtypes, ranks, offsets inside its buffer, descriptors; worker_replies.h). A
// worker that sends anything else is killed as a protocol violator, restarted, and its shard
// re-run; nothing a worker sends can crash the parent or write into a result already delivered.
//
// Pieces live apart: spawn.cc starts and reaps processes (on one long-lived thread),
// protocol.cc is the transport, batch.cc splits, lays out and gathers, fault_policy.cc decides
// when the dead come back, and scheduler.cc (shared with the thread engine) owns admission, the
// queues, re-runs, speeds and answering requests.
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/error.h"
#include "format/tandem_format.h"
#include "parallel/batch.h"
#include "parallel/device.h"
#include "parallel/digest.h"
#include "parallel/engine.h"
#include "parallel/fault_policy.h"
#include "parallel/protocol.h"
#include "parallel/scheduler.h"
#include "parallel/shm_buffer.h"
#include "parallel/spawn.h"
#include "parallel/unique_fd.h"
#include "parallel/worker_replies.h"
#include "runtime/convert.h"

namespace tandem::parallel {

namespace {

// A stopped worker (SIGSTOP) is hung once stopped this long, or 4x its shard's expected time.
constexpr std::chrono::milliseconds kStoppedGrace{1000};
// How often live workers are checked for being stopped.
constexpr std::chrono::milliseconds kStopCheckInterval{100};

// ShardTask::kind: a shard to compute, or a query of the output shapes for its input shapes.
enum TaskKind : int { kPredictTask = 0, kShapesTask = 1 };

struct Request : RequestBase {
  BatchedInputs in;  // `ordered` is cleared once the inputs are in shared memory
  RequestLayout layout;
  std::shared_ptr<ShmBuffer> in_buf, out_buf;
  std::vector<std::vector<TensorDesc>> shard_shapes;
  std::vector<bool> shape_known;
  // Output shapes that depend on input values: each shard's outputs come back in a buffer of
  // its worker's own and are gathered by copying.
  bool dynamic_outputs = false;
  std::vector<std::unique_ptr<ShmBuffer>> spilled;
  std::vector<std::vector<TensorDesc>> spilled_desc;
};

Request& request_of(const ShardTask& t) {
  return static_cast<Request&>(*t.req);
}

struct Worker {
  int index = 0;
  DeviceSpec device;
  int threads = 1;
  pid_t pid = -1;
  UniqueFd sock, pidfd;
  int generation = 0;  // bumped at every (re)start, so stale poll results are recognised
  Clock::time_point spawned;
  // kWaiting: dead, restart scheduled (back-off); kDown: rate limit exceeded, probe scheduled.
  enum State { kStarting, kIdle, kBusy, kWaiting, kDown } state = kStarting;
  std::optional<ShardTask> inflight;
  // While a task is with the worker: its request's buffers. A buffer returns to the pool only
  // when nothing references it, so one the worker may still write into stays out of the pool
  // until the worker has answered or is dead, even if the request failed meanwhile.
  std::shared_ptr<ShmBuffer> pinned_in, pinned_out;
  Clock::time_point sent, deadline;
  RestartPolicy policy;
  int starts = 0;  // restarts and probes
  std::string last_error;
  std::string hung;  // set when the supervisor killed it as hung
  std::optional<Clock::time_point> stopped_since;

  std::string name() const { return fmt::format("{} (worker {})", device.name, index); }
  bool serving() const { return state == kIdle || state == kBusy; }
};

class ProcessEngine : public ParallelPredictor::Engine {
 public:
  explicit ProcessEngine(ParallelOptions options)
      : options_(std::move(options)),
        scheduler_(options_.queue_capacity),
        pool_(std::make_shared<ShmPool>(16)) {
    policy_.max_restarts = options_.max_restarts;
    policy_.restart_window = options_.restart_window;
    policy_.restart_backoff = options_.restart_backoff;
    policy_.probe_interval = options_.probe_interval;
    policy_.max_probe_interval = options_.max_probe_interval;
  }
  ~ProcessEngine() override { finalize(); }

  void build() override;
  std::future<std::vector<Tensor>> submit(const std::vector<Tensor>& inputs) override;
  void finalize() override;
  ParallelStats stats() const override;
  std::vector<TensorInfo> inputs() const override { return inputs_; }
  std::vector<TensorInfo> outputs() const override { return outputs_; }

 private:
  // Supervision: processes, deaths, restarts, hangs.
  void spawn(Worker& w);
  void reap(Worker& w, const std::string& cause);
  void supervise();
  void supervise_once();
  void on_readable(Worker& w);
  void on_death(Worker& w, const std::string& cause);
  void start_due_workers();
  void check_hung();
  void update_all_down();
  void shutdown_workers();
  void wake();
  // Replies, checked.
  void on_message(Worker& w, Message& m);
  void on_build_finish(Worker& w, const Message& m);
  // Sharding (the queues are the scheduler's).
  void start_request(const std::shared_ptr<Request>& r);
  void plan_outputs(const std::shared_ptr<Request>& r);
  void dispatch();
  void send_task(Worker& w, ShardTask t);
  void complete(Request& r);
  void fail(Request& r, const std::string& why, ErrorCode code = ErrorCode::kRuntime);
  void on_shapes(const std::vector<Shape>& key, const Message& m);
  void publish_state();

  ParallelOptions options_;
  Scheduler scheduler_;
  FaultPolicyOptions policy_;
  std::string binary_;
  std::string model_;   // what workers load: the model file, or the converted memfd's path
  UniqueFd converted_;  // the sealed memfd with the converted model (convert_once)
  bool checksum_verified_ = false;  // the .tandem model's checksum was checked here
  std::string digest_;              // the model file's content, as read at build()
  nlohmann::json built_as_;         // the first BUILD_FINISH's description
  std::unique_ptr<Spawner> spawner_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::shared_ptr<ShmPool> pool_;
  std::vector<TensorInfo> inputs_, outputs_;
  UniqueFd event_fd_;
  std::thread supervisor_;

  // Supervisor-only state.
  std::map<std::vector<Shape>, std::vector<TensorDesc>> shape_cache_;
  std::set<std::vector<Shape>> dynamic_shapes_;  // input shapes whose output shapes vary
  std::map<std::vector<Shape>, std::vector<std::pair<std::shared_ptr<Request>, int>>>
      shape_waiters_;
  Clock::time_point last_stop_check_;

  // Shared with callers, under mu_.
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<Request>> incoming_;  // admitted, for the supervisor to start
  bool built_ = false, finalized_ = false;         // stopping is the scheduler's (Scheduler::stop)
  std::string down_reason_;
  ParallelStats stats_;  // devices' state and supervisor errors; counters are the scheduler's
};

void ProcessEngine::spawn(Worker& w) {
  std::vector<std::string> args = {binary_,          "worker",
                                   "--fd",           "3",
                                   "--model",        model_,
                                   "--model-digest", digest_,
                                   "--device",       w.device.name,
                                   "--threads",      std::to_string(w.threads),
                                   "--index",        std::to_string(w.index),
                                   "--parent-pid",   std::to_string(::getpid())};
  // The size caps the predictor was given (ParallelOptions), the same in every worker.
  args.insert(args.end(), {"--max-tensor-bytes", std::to_string(options_.max_tensor_bytes),
                           "--max-model-bytes", std::to_string(options_.max_model_bytes)});
  if (!w.device.cores.empty()) {
    args.push_back("--cores");
    args.push_back(fmt::format("{}", fmt::join(w.device.cores, ",")));
  }
  if (!options_.input_shapes.empty()) {
    std::string s;
    for (const auto& [name, shape] : options_.input_shapes)
      s += fmt::format("{}{}:{}", s.empty() ? "" : ";", name, fmt::join(shape, ","));
    args.push_back("--input-shape");
    args.push_back(s);
  }
  if (model_ != options_.model_path) args.insert(args.end(), {"--source", options_.model_path});
  if (checksum_verified_) args.push_back("--checksum-verified");
  if (options_.verbose) args.push_back("--verbose");
  WorkerProcess p;
  spawner_->run([&] { p = spawn_process(args); });
  w.pid = p.pid;
  w.sock = std::move(p.sock);
  w.pidfd = std::move(p.pidfd);
  w.state = Worker::kStarting;
  w.hung.clear();
  w.stopped_since.reset();
  w.spawned = Clock::now();
  ++w.generation;
}

void ProcessEngine::reap(Worker& w, const std::string& cause) {
  if (w.pid > 0) {
    std::string how = reap_process(w.pid);
    w.last_error = cause.empty() ? how : cause + " (" + how + ")";
  }
  w.sock.reset();
  w.pidfd.reset();
  w.pid = -1;
}

void ProcessEngine::build() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    TANDEM_CHECK(!finalized_, ErrorCode::kInvalidArgument,
                 "build() after finalize(): create a new predictor");
    if (built_) return;  // built already (e.g. by entering a `with` block): nothing to do
  }
  TANDEM_CHECK(!options_.model_path.empty(), ErrorCode::kInvalidArgument, "no model path given");
  TANDEM_CHECK(std::filesystem::is_regular_file(options_.model_path), ErrorCode::kNotFound,
               "model file '{}' does not exist or is not a file", options_.model_path);
  binary_ = find_worker_binary(options_.worker_binary);
  model_ = options_.model_path;
  if (options_.convert_once && !is_tandem_file(options_.model_path)) {
    // One physical copy of the weights per host: the workers map this memfd by its /proc path
    // (it is close-on-exec; they open it as the same user). Sealed, it is also the bytes every
    // restarted worker gets, whatever becomes of the file.
    try {
      ConvertOptions convert;
      convert.limits = {options_.max_tensor_bytes, options_.max_model_bytes};
      converted_.reset(convert_to_sealed_memfd(options_.model_path, convert));
      model_ = fmt::format("/proc/{}/fd/{}", ::getpid(), converted_.get());
      // The conversion's graph, weights and packed copies are freed now, but malloc keeps most
      // of those pages for reuse: a parent that only dispatches shards would hold them for good
      // (90 MiB after converting a 34 MB UNet). Give them back.
      ::malloc_trim(0);
    } catch (const Error&) {
      // The workers build from the file and report what is wrong, as without convert_once.
    }
  }
  digest_ = file_digest(model_);
  // A .tandem file's checksum is checked here, once, instead of by every worker (each would read
  // all of its gigabytes): the workers are told to skip it, and the digest (size and checksum
  // from the header) still makes them refuse a file replaced since. The memfd was written here.
  checksum_verified_ = static_cast<bool>(converted_) || !options_.verify_checksum;
  if (!checksum_verified_ && is_tandem_file(model_)) {
    try {
      verify_tandem_checksum(model_);
      checksum_verified_ = true;
    } catch (const Error&) {
      // The workers check it themselves and report what is wrong, as for any bad model.
    }
  }
  workers_ = workers_for<Worker>(
      plan_workers(options_.devices, options_.core_lists, options_.workers_per_device));
  for (auto& w : workers_) w->policy = RestartPolicy(policy_);
  event_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  TANDEM_CHECK(event_fd_, ErrorCode::kRuntime, "eventfd failed: {}", std::strerror(errno));
  spawner_ = std::make_unique<Spawner>();

  // Start every worker at once: builds run in parallel.
  std::map<int, std::string> failures;
  for (auto& w : workers_) {
    try {
      spawn(*w);
    } catch (const Error& e) {
      failures[w->index] = e.what();
      w->state = Worker::kDown;
    }
  }
  auto give_up = Clock::now() + options_.build_timeout;
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Worker*> owners;
    for (auto& w : workers_) {
      if (w->state != Worker::kStarting) continue;
      fds.push_back({w->sock.get(), POLLIN, 0});
      owners.push_back(w.get());
    }
    if (fds.empty()) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - Clock::now());
    if (left.count() <= 0) {
      for (Worker* w : owners) {
        reap(*w, "");
        failures[w->index] =
            fmt::format("did not finish building within {} ms", options_.build_timeout.count());
        w->state = Worker::kDown;
      }
      break;
    }
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (n <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      Worker& w = *owners[i];
      std::string why;
      try {
        std::optional<Message> m = recv_message(w.sock.get());
        std::vector<UniqueFd> stray;  // no build message carries descriptors
        if (m)
          for (auto& [id, fd] : m->fds) stray.emplace_back(fd);
        if (m && m->type == MsgType::kBuildFinish) {
          require(stray.empty(), "BUILD_FINISH carries {} descriptors", stray.size());
          on_build_finish(w, *m);  // throws when it differs from the first worker's
          if (options_.verbose) std::printf("Success to build model %d\n", w.index);
          std::fflush(stdout);
          continue;
        }
        if (m && m->type == MsgType::kError)
          why = m->text;
        else if (m)
          why = fmt::format("sent {} while building", msg_type_name(m->type));
      } catch (const std::exception& e) {
        why = e.what();
      }
      reap(w, "");
      failures[w.index] = why.empty() ? "worker " + w.last_error + " while building" : why;
      w.state = Worker::kDown;
    }
  }
  if (!failures.empty()) {
    for (auto& w : workers_) reap(*w, "");
    event_fd_.reset();
    spawner_.reset();
    std::string msg =
        fmt::format("build failed on {} of {} workers:", failures.size(), workers_.size());
    for (auto& [idx, why] : failures) msg += fmt::format("\n  {}: {}", workers_[idx]->name(), why);
    workers_.clear();
    built_as_ = nullptr;
    throw Error(ErrorCode::kRuntime, msg);
  }
  inputs_ = tensor_infos(built_as_.at("inputs"), "inputs");
  outputs_ = tensor_infos(built_as_.at("outputs"), "outputs");
  {
    std::lock_guard<std::mutex> lock(mu_);
    built_ = true;
    for (auto& w : workers_) {
      DeviceStats d;
      d.device = w->device.name;
      d.worker = w->index;
      d.pid = w->pid;
      stats_.devices.push_back(d);
    }
  }
  scheduler_.open(workers_.size());
  last_stop_check_ = Clock::now();
  supervisor_ = std::thread([this] { supervise(); });
}

// A worker says it built: the same model as every other worker and as the first build, or it
// is refused (a restarted worker that found another file, say).
void ProcessEngine::on_build_finish(Worker& w, const Message& m) {
  nlohmann::json desc = build_description(m.text);  // checks every field
  if (built_as_.is_null()) built_as_ = desc;
  require(desc == built_as_,
          "{} built a different model than the predictor was built with: {} instead of {}",
          w.name(), desc.dump(), built_as_.dump());
  w.state = Worker::kIdle;
  w.policy.on_built();
}

std::future<std::vector<Tensor>> ProcessEngine::submit(const std::vector<Tensor>& inputs) {
  auto r = std::make_shared<Request>();
  std::string down;
  {
    std::lock_guard<std::mutex> lock(mu_);
    down = down_reason_;
  }
  scheduler_.admit(r, down);  // the overhead counts the copy into shared memory too
  try {
    r->in = analyse_inputs(inputs_, inputs);
    r->shards = split_batch(r->in.batch, scheduler_.split_speeds(), r->in.fixed_batch);
    r->layout = layout_inputs(r->in, r->shards);
    r->in_buf = pool_->acquire(r->layout.input_bytes);
    write_inputs(r->in, r->layout, r->in_buf->data());
  } catch (...) {
    scheduler_.withdraw(*r);
    throw;
  }
  r->in.ordered.clear();
  auto future = r->promise.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    incoming_.push_back(r);
  }
  wake();
  return future;
}

void ProcessEngine::wake() {
  uint64_t one = 1;
  ssize_t n = ::write(event_fd_.get(), &one, sizeof(one));
  (void)n;
}

void ProcessEngine::start_request(const std::shared_ptr<Request>& r) {
  if (scheduler_.answered(*r)) return;  // failed while it waited (every device down)
  size_t n = r->shards.size();
  r->shard_shapes.assign(n, {});
  r->shape_known.assign(n, false);
  for (size_t s = 0; s < n; ++s) {
    std::vector<Shape> key;
    for (const auto& d : r->layout.shard_inputs[s]) key.push_back(d.shape);
    if (dynamic_shapes_.count(key)) {
      r->dynamic_outputs = true;
      r->shape_known[s] = true;
      continue;
    }
    auto it = shape_cache_.find(key);
    if (it != shape_cache_.end()) {
      r->shard_shapes[s] = it->second;
      r->shape_known[s] = true;
      continue;
    }
    auto& waiters = shape_waiters_[key];
    if (waiters.empty()) scheduler_.enqueue_shared({r, static_cast<int>(s), 0, kShapesTask});
    waiters.emplace_back(r, static_cast<int>(s));
  }
  plan_outputs(r);
}

void ProcessEngine::plan_outputs(const std::shared_ptr<Request>& r) {
  if (scheduler_.answered(*r)) return;
  for (bool k : r->shape_known)
    if (!k) return;
  if (r->dynamic_outputs) {
    r->spilled.resize(r->shards.size());
    r->spilled_desc.resize(r->shards.size());
    for (size_t s = 0; s < r->shards.size(); ++s)
      scheduler_.enqueue(r->shards[s].worker, {r, static_cast<int>(s), 0, kPredictTask});
    return;
  }
  try {
    std::vector<std::string> names;
    for (const auto& o : outputs_) names.push_back(o.name);
    layout_outputs(r->layout, r->in, r->shards, batched_outputs(outputs_, r->in.fixed_batch),
                   r->shard_shapes, names);
    r->out_buf = pool_->acquire(r->layout.output_bytes);
  } catch (const std::exception& e) {
    scheduler_.fail(*r, fmt::format("request {}: {}", r->id, e.what()), error_code_of(e));
    return;
  }
  for (size_t s = 0; s < r->shards.size(); ++s)
    scheduler_.enqueue(r->shards[s].worker, {r, static_cast<int>(s), 0, kPredictTask});
}

void ProcessEngine::send_task(Worker& w, ShardTask t) {
  Request& r = request_of(t);
  Message m;
  m.type = t.kind == kShapesTask ? MsgType::kShapes : MsgType::kPredict;
  m.request_id = r.id;
  m.shard = static_cast<uint32_t>(t.shard);
  m.inputs = r.layout.shard_inputs[t.shard];
  if (t.kind == kPredictTask) {
    m.in_buffer = r.in_buf->id();
    // The worker maps each buffer once and closes the duplicates it already knows.
    m.fds = {{r.in_buf->id(), r.in_buf->fd()}};
    if (!r.dynamic_outputs) {
      m.outputs = r.layout.shard_outputs[t.shard];
      m.out_buffer = r.out_buf->id();
      m.fds.emplace_back(r.out_buf->id(), r.out_buf->fd());
    }
  }
  bool sent = false;
  try {
    sent = send_message(w.sock.get(), m);
  } catch (const Error&) {
    sent = false;
  }
  if (!sent) {
    scheduler_.enqueue_shared(std::move(t));  // the worker is going away; poll sees its death
    return;
  }
  w.pinned_in = r.in_buf;
  w.pinned_out = r.out_buf;
  w.inflight = std::move(t);
  w.state = Worker::kBusy;
  w.sent = Clock::now();
  w.deadline = w.sent + options_.deadline;
}

void ProcessEngine::dispatch() {
  for (auto& w : workers_) {
    if (w->state != Worker::kIdle) continue;
    ShardTask t;
    if (scheduler_.take(w->index, t)) send_task(*w, std::move(t));
  }
}

void ProcessEngine::complete(Request& r) {
  std::vector<Tensor> outs;
  if (r.dynamic_outputs) {
    try {
      // Every descriptor was checked against its buffer when the reply came.
      std::vector<std::vector<ShardOutput>> per_shard(r.shards.size());
      for (size_t s = 0; s < r.shards.size(); ++s)
        for (const TensorDesc& d : r.spilled_desc[s])
          per_shard[s].push_back({d.dtype, d.shape, r.spilled[s]->data() + d.offset});
      outs = gather_outputs(outputs_, batched_outputs(outputs_, r.in.fixed_batch), r.shards,
                            r.in.batch, per_shard);
    } catch (const std::exception& e) {
      r.spilled.clear();
      scheduler_.fail(r, fmt::format("request {}: {}", r.id, e.what()), error_code_of(e));
      return;
    }
    r.spilled.clear();
  } else {
    std::shared_ptr<void> keeper = r.out_buf;
    for (size_t o = 0; o < outputs_.size(); ++o)
      outs.push_back(Tensor::adopt(r.layout.output_dtype[o], r.layout.output_shape[o],
                                   r.out_buf->data() + r.layout.output_offset[o], keeper,
                                   outputs_[o].name));
  }
  r.in_buf.reset();
  r.out_buf.reset();
  scheduler_.complete(r, std::move(outs));
}

// A request that failed drops only its own references to its buffers: a shard still running
// elsewhere keeps them pinned (Worker::pinned_*) until its worker answers or dies.
void ProcessEngine::fail(Request& r, const std::string& why, ErrorCode code) {
  r.in_buf.reset();
  r.out_buf.reset();
  r.spilled.clear();
  scheduler_.fail(r, why, code);
}

// Device state for stats(), and which workers the next split may plan for.
void ProcessEngine::publish_state() {
  const auto now = Clock::now();
  bool any_up = false;
  for (auto& w : workers_) any_up = any_up || w->serving();
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& w = *workers_[i];
    // While none serves, plan for those coming back; their queues wait for them.
    scheduler_.set_usable(w.index, w.serving() || (!any_up && (w.state == Worker::kStarting ||
                                                               w.state == Worker::kWaiting)));
    DeviceStats& d = stats_.devices[i];
    d.up = w.state != Worker::kDown;
    d.state = w.serving()                    ? "up"
              : w.state == Worker::kStarting ? "starting"
              : w.state == Worker::kWaiting  ? "restarting"
                                             : "down";
    d.restarts = w.starts;
    d.restarts_in_window = w.policy.restarts_in_window(now);
    auto next = w.policy.next_start();
    d.next_start_s = next && (w.state == Worker::kWaiting || w.state == Worker::kDown)
                         ? std::max(0.0, std::chrono::duration<double>(*next - now).count())
                         : -1;
    d.last_error = w.last_error;
    d.pid = w.pid;
  }
}

void ProcessEngine::on_shapes(const std::vector<Shape>& key, const Message& m) {
  bool dynamic = m.type == MsgType::kReply && m.text == kDynamicOutputs;
  if (m.type == MsgType::kReply) {
    if (dynamic)
      dynamic_shapes_.insert(key);
    else
      shape_cache_[key] = m.outputs;
  }
  auto waiters = std::move(shape_waiters_[key]);
  shape_waiters_.erase(key);
  for (auto& [wr, s] : waiters) {
    if (m.type == MsgType::kError) {
      fail(*wr, fmt::format("request {}: {}", wr->id, m.text));
      continue;
    }
    if (dynamic)
      wr->dynamic_outputs = true;
    else
      wr->shard_shapes[s] = m.outputs;
    wr->shape_known[s] = true;
    plan_outputs(wr);
  }
}

void ProcessEngine::on_message(Worker& w, Message& m) {
  // Take every received descriptor at once so none can leak, whatever happens next.
  std::vector<UniqueFd> fds;
  for (auto& [id, fd] : m.fds) fds.emplace_back(fd);
  if (w.state == Worker::kStarting) {
    require(fds.empty(), "{} carries {} descriptors", msg_type_name(m.type), fds.size());
    if (m.type == MsgType::kError) {
      // A restarted worker that can no longer build: counts as a death.
      on_death(w, "rebuild failed: " + m.text);
      return;
    }
    require(m.type == MsgType::kBuildFinish, "{} while building", msg_type_name(m.type));
    on_build_finish(w, m);
    update_all_down();
    return;
  }
  // A worker answers only what it was sent, one message at a time.
  require(w.state == Worker::kBusy && w.inflight.has_value(), "unsolicited {}",
          msg_type_name(m.type));
  const ShardTask& t = *w.inflight;
  require(m.request_id == t.req->id && m.shard == static_cast<uint32_t>(t.shard),
          "answer for request {} shard {}, but it owes request {} shard {}", m.request_id, m.shard,
          t.req->id, t.shard);
  require(m.type == MsgType::kReply || m.type == MsgType::kError, "{} in answer to {}",
          msg_type_name(m.type), t.kind == kShapesTask ? "SHAPES" : "PREDICT");
  std::shared_ptr<Request> r = std::static_pointer_cast<Request>(t.req);
  if (m.type == MsgType::kError) {
    require(fds.empty() && m.outputs.empty(), "an ERROR with outputs or descriptors");
  } else if (t.kind == kShapesTask) {
    check_shapes_reply(m, outputs_);
  } else if (r->dynamic_outputs) {
    require(fds.size() == 1, "a reply with outputs of its own carries {} descriptors (want 1)",
            fds.size());
  } else {
    require(fds.empty() && m.outputs.empty() && m.text.empty(),
            "a reply into the parent's buffer carries outputs, descriptors or text");
  }
  std::unique_ptr<ShmBuffer> spilled;
  if (m.type == MsgType::kReply && t.kind == kPredictTask && r->dynamic_outputs) {
    try {
      spilled = std::make_unique<ShmBuffer>(m.fds[0].first, fds[0].release());
    } catch (const Error& e) {
      throw ProtocolViolation(e.what());  // unsealed, not a file, unmappable
    }
    check_spilled_reply(m, outputs_, spilled->size());
  }
  // The answer is valid: the worker is free, and the buffers it held go back to the request.
  ShardTask done = std::move(*w.inflight);
  w.inflight.reset();
  w.pinned_in.reset();
  w.pinned_out.reset();
  w.state = Worker::kIdle;
  w.stopped_since.reset();
  if (scheduler_.answered(*r)) return;
  if (done.kind == kShapesTask) {
    std::vector<Shape> key;
    for (const auto& d : r->layout.shard_inputs[done.shard]) key.push_back(d.shape);
    if (m.type == MsgType::kError) m.text = fmt::format("device {}: {}", w.name(), m.text);
    on_shapes(key, m);
    return;
  }
  if (m.type == MsgType::kError) {
    fail(*r, fmt::format("request {}: device {}: {}", r->id, w.name(), m.text), m.code);
    return;
  }
  if (r->dynamic_outputs) {
    // A shard is answered once: a re-run that raced its original keeps the first answer (the
    // scheduler ignores the second one likewise).
    if (r->spilled[done.shard]) return;
    r->spilled[done.shard] = std::move(spilled);
    r->spilled_desc[done.shard] = m.outputs;
  }
  if (scheduler_.shard_done(*r, done.shard, w.index, m.compute_ms)) complete(*r);
}

void ProcessEngine::on_death(Worker& w, const std::string& cause) {
  reap(w, cause);  // dead for sure from here: nothing it held can be written any more
  w.pinned_in.reset();
  w.pinned_out.reset();
  // Its queue goes to the others, and the shard it ran goes ahead of that queue.
  scheduler_.release_queue(w.index);
  if (w.inflight) {
    ShardTask t = std::move(*w.inflight);
    w.inflight.reset();
    if (!scheduler_.rerun(t))
      fail(request_of(t),
           fmt::format("request {}: shard {} was lost with {} workers; last: {} {}", t.req->id,
                       t.shard, kMaxShardAttempts, w.name(), w.last_error));
  }
  w.stopped_since.reset();
  if (scheduler_.stopping()) {
    w.state = Worker::kDown;
    update_all_down();  // requests still in flight fail rather than keep finalize() waiting
    return;
  }
  w.policy.on_death(Clock::now());
  w.state = w.policy.down() ? Worker::kDown : Worker::kWaiting;
  if (!w.policy.down()) ++w.starts;  // counted when decided, so stats show it at once
  if (w.policy.down())
    w.last_error += fmt::format(
        "; device marked down after {} restarts within {} s, probed "
        "again later",
        options_.max_restarts, options_.restart_window.count() / 1000.0);
  update_all_down();
}

// Restarts whose back-off has passed and probes of down devices that are due.
void ProcessEngine::start_due_workers() {
  const auto now = Clock::now();
  for (auto& w : workers_) {
    if (w->state != Worker::kWaiting && w->state != Worker::kDown) continue;
    auto due = w->policy.next_start();
    if (!due || now < *due) continue;
    w->policy.clear_next_start();
    if (w->state == Worker::kDown) ++w->starts;  // a probe (restarts count when scheduled)
    try {
      spawn(*w);
    } catch (const Error& e) {
      on_death(*w, fmt::format("restart failed: {}", e.what()));
    }
  }
}

// Requests fail only when every device is down (rate limit exceeded): while any worker serves,
// starts or waits out a short back-off, they wait for it.
void ProcessEngine::update_all_down() {
  bool all_down = !workers_.empty();
  for (auto& w : workers_) all_down = all_down && w->state == Worker::kDown;
  std::string why;
  if (all_down) {
    why = "all workers are down:";
    const auto now = Clock::now();
    for (auto& w : workers_) {
      auto next = w->policy.next_start();
      why += fmt::format(" {}: {} after {} restarts, next probe in {:.1f} s;", w->name(),
                         w->last_error, w->starts,
                         next ? std::chrono::duration<double>(*next - now).count() : -1.0);
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    down_reason_ = why;
  }
  if (!all_down) return;
  // Buffers go back when the requests and the (dead) workers drop them.
  scheduler_.fail_all(why);
  scheduler_.clear_queues();
  shape_waiters_.clear();
}

// Hangs. A worker that owes an answer past its deadline is hung; so is one stopped by a signal
// (SIGSTOP: state 'T') for more than max(kStoppedGrace, 4x its shard's expected time). A stopped
// process cannot make progress, so there is no reason to wait out the full deadline (120 s by
// default) for it; the grace only keeps a brief job-control stop from costing a restart.
// Hung workers are SIGKILLed; their death (seen through the pidfd or socket) re-runs the shard.
void ProcessEngine::check_hung() {
  const auto now = Clock::now();
  const bool check_stops = now - last_stop_check_ >= kStopCheckInterval;
  if (check_stops) last_stop_check_ = now;
  for (auto& w : workers_) {
    if (!w->hung.empty() || w->pid <= 0) continue;
    if (w->state == Worker::kBusy && now > w->deadline) {
      w->hung = fmt::format("no reply within the {} ms deadline (hung)", options_.deadline.count());
    } else if (w->state == Worker::kStarting && now > w->spawned + options_.build_timeout) {
      w->hung = fmt::format("did not rebuild within {} ms", options_.build_timeout.count());
    } else if (check_stops) {
      if (!process_stopped(w->pid)) {
        w->stopped_since.reset();
        continue;
      }
      if (!w->stopped_since) w->stopped_since = now;
      auto grace = kStoppedGrace;
      const double speed = scheduler_.speed(w->index);
      if (w->state == Worker::kBusy && w->inflight && speed > 0) {
        double expected_ms = w->inflight->req->shards[w->inflight->shard].count * 1000.0 / speed;
        grace = std::max(grace, std::chrono::milliseconds(static_cast<int64_t>(4 * expected_ms)));
      }
      if (now - *w->stopped_since < grace) continue;
      w->hung = fmt::format("stopped by a signal for more than {} ms (hung)", grace.count());
    }
    if (!w->hung.empty()) ::kill(w->pid, SIGKILL);
  }
}

void ProcessEngine::on_readable(Worker& w) {
  std::optional<Message> m;
  try {
    m = recv_message(w.sock.get());
  } catch (const std::exception& e) {
    on_death(w, fmt::format("protocol violation: {}", e.what()));
    return;
  }
  if (!m) {
    on_death(w, w.hung);
    return;
  }
  try {
    on_message(w, *m);
  } catch (const std::exception& e) {
    // Malformed, unsolicited or inconsistent: the worker cannot be trusted with the shard.
    if (w.pid > 0) ::kill(w.pid, SIGKILL);
    on_death(w, fmt::format("protocol violation: {}", e.what()));
  }
}

void ProcessEngine::supervise_once() {
  // New requests.
  std::deque<std::shared_ptr<Request>> fresh;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fresh.swap(incoming_);
  }
  for (auto& r : fresh) {
    std::string down;
    {
      std::lock_guard<std::mutex> lock(mu_);
      down = down_reason_;
    }
    if (!down.empty())
      fail(*r, fmt::format("request {}: {}", r->id, down));
    else
      start_request(r);
  }
  start_due_workers();
  dispatch();
  publish_state();

  std::vector<pollfd> fds{{event_fd_.get(), POLLIN, 0}};
  struct Owner {
    Worker* w;
    bool is_pidfd;
    int generation;
  };
  std::vector<Owner> owners{{nullptr, false, 0}};
  const auto now = Clock::now();
  auto next_wake = now + std::chrono::seconds(1);
  for (auto& w : workers_) {
    if (w->sock) {
      fds.push_back({w->sock.get(), POLLIN, 0});
      owners.push_back({w.get(), false, w->generation});
    }
    if (w->pidfd) {
      fds.push_back({w->pidfd.get(), POLLIN, 0});
      owners.push_back({w.get(), true, w->generation});
    }
    if (w->state == Worker::kBusy)
      next_wake = std::min({next_wake, w->deadline, now + kStopCheckInterval});
    if (w->state == Worker::kStarting)
      next_wake =
          std::min({next_wake, w->spawned + options_.build_timeout, now + kStopCheckInterval});
    if (w->state == Worker::kWaiting || w->state == Worker::kDown)
      if (auto due = w->policy.next_start()) next_wake = std::min(next_wake, *due);
  }
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_wake - now);
  int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(0, wait.count()) + 1));
  if (n > 0 && (fds[0].revents & POLLIN)) {
    uint64_t v;
    ssize_t got = ::read(event_fd_.get(), &v, sizeof(v));
    (void)got;
  }
  for (size_t i = 1; n > 0 && i < fds.size(); ++i) {
    Worker* w = owners[i].w;
    // Skip what an earlier entry of this round already handled (death, restart).
    if (!fds[i].revents || !w->sock || w->generation != owners[i].generation) continue;
    if (owners[i].is_pidfd) {
      on_death(*w, w->hung);
    } else if (fds[i].revents & POLLIN) {
      on_readable(*w);
    } else if (fds[i].revents & (POLLHUP | POLLERR)) {
      on_death(*w, w->hung);
    }
  }
  check_hung();
}

void ProcessEngine::supervise() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      // A request admitted before stop() is either in incoming_ or active in the scheduler.
      if (scheduler_.stopping() && incoming_.empty() && scheduler_.idle()) break;
    }
    // Nothing may escape this thread (it would terminate the process): an unexpected failure
    // is recorded and the loop goes on.
    try {
      supervise_once();
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.supervisor_errors++;
      stats_.last_supervisor_error = e.what();
    }
  }
}

void ProcessEngine::shutdown_workers() {
  for (auto& w : workers_) {
    if (!w->sock) continue;
    Message bye;
    bye.type = MsgType::kExit;
    try {
      send_message(w->sock.get(), bye);
    } catch (const Error&) {
    }
  }
  // Give every worker a moment to leave on its own, then make sure.
  auto give_up = Clock::now() + std::chrono::seconds(5);
  for (auto& w : workers_) {
    while (w->pid > 0 && Clock::now() < give_up) {
      int status;
      pid_t r = ::waitpid(w->pid, &status, WNOHANG);
      if (r == w->pid || r < 0) {
        w->pid = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    reap(*w, "");
    w->inflight.reset();
    w->pinned_in.reset();
    w->pinned_out.reset();
  }
}

void ProcessEngine::finalize() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finalized_) return;
    finalized_ = true;
  }
  scheduler_.stop();
  if (supervisor_.joinable()) {
    wake();
    supervisor_.join();
  }
  shutdown_workers();
  spawner_.reset();
  event_fd_.reset();
  converted_.reset();  // no worker will map it again
  pool_->clear();
}

ParallelStats ProcessEngine::stats() const {
  ParallelStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = stats_;
  }
  scheduler_.fill_stats(s);
  return s;
}

}  // namespace

std::unique_ptr<ParallelPredictor::Engine> make_process_engine(ParallelOptions options) {
  return std::make_unique<ProcessEngine>(std::move(options));
}

}  // namespace tandem::parallel

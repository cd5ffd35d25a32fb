// The process engine: one `tandem worker` process per worker, a supervisor thread that owns all
// of them. The supervisor polls every worker's socket and pidfd plus an eventfd for new
// requests, sends shards, takes replies, enforces deadlines, restarts the dead and re-runs their
// shards elsewhere. Callers only touch the request queue (under a mutex).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/error.h"
#include "parallel/batch.h"
#include "parallel/device.h"
#include "parallel/engine.h"
#include "parallel/protocol.h"
#include "parallel/shm_buffer.h"

extern char** environ;

namespace tandem::parallel {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kMaxShardAttempts = 3;  // a shard that kills this many workers fails its request

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return fmt::format("killed by signal {} ({})", sig, strsignal(sig));
  }
  return "ended";
}

std::vector<TensorInfo> infos_from_json(const nlohmann::json& a) {
  std::vector<TensorInfo> out;
  for (const auto& j : a) {
    TensorInfo i;
    i.name = j.at("name").get<std::string>();
    i.dtype = static_cast<DataType>(j.at("dtype").get<int>());
    i.shape = j.at("shape").get<Shape>();
    i.dim_names = j.at("dim_names").get<std::vector<std::string>>();
    out.push_back(i);
  }
  return out;
}

std::string find_worker_binary(const std::string& configured) {
  namespace fs = std::filesystem;
  if (!configured.empty()) {
    // A path the caller names is the one to use: no silent fallback.
    TANDEM_CHECK(::access(configured.c_str(), X_OK) == 0, ErrorCode::kNotFound,
                 "worker binary '{}' does not exist or is not executable", configured);
    return configured;
  }
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("TANDEM_WORKER_BINARY")) candidates.push_back(env);
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back((self.parent_path() / "tandem").string());
#ifdef TANDEM_DEFAULT_WORKER_BINARY
  candidates.push_back(TANDEM_DEFAULT_WORKER_BINARY);
#endif
  for (const auto& c : candidates)
    if (::access(c.c_str(), X_OK) == 0) return c;
  raise(ErrorCode::kNotFound,
        "cannot find the `tandem` binary that runs workers (tried: {}); set "
        "ParallelOptions::worker_binary or TANDEM_WORKER_BINARY",
        fmt::join(candidates, ", "));
}

struct Request;

struct Task {
  enum Kind { kPredict, kShapes } kind = kPredict;
  std::shared_ptr<Request> req;
  int shard = 0;
  int attempts = 0;
};

struct Request {
  uint64_t id = 0;
  BatchedInputs in;  // `ordered` is cleared once the inputs are in shared memory
  std::vector<ShardPlan> shards;
  RequestLayout layout;
  std::shared_ptr<ShmBuffer> in_buf, out_buf;
  std::vector<std::vector<TensorDesc>> shard_shapes;
  std::vector<bool> shape_known;
  int remaining = 0;
  std::vector<bool> shard_done;
  // Output shapes that depend on input values: each shard's outputs come back in a buffer of
  // its worker's own and are gathered by copying.
  bool dynamic_outputs = false;
  std::vector<std::unique_ptr<ShmBuffer>> spilled;
  std::vector<std::vector<TensorDesc>> spilled_desc;
  double max_compute_ms = 0;
  bool finished = false;
  std::promise<std::vector<Tensor>> promise;
  Clock::time_point start;
};

struct Worker {
  int index = 0;
  DeviceSpec device;
  int threads = 1;
  pid_t pid = -1;
  int sock = -1;
  int pidfd = -1;
  int generation = 0;  // bumped at every (re)start, so stale poll results are recognised
  Clock::time_point spawned;
  enum State { kStarting, kIdle, kBusy, kDown } state = kStarting;
  std::deque<Task> queue;
  std::optional<Task> inflight;
  Clock::time_point deadline;
  int restarts = 0;
  double speed = 0;  // items/s, moving average; 0 = not measured yet
  double busy_ms = 0;
  int64_t items = 0;
  std::string last_error;
  std::string hung;  // set when the supervisor killed it for missing its deadline

  std::string name() const { return fmt::format("{} (worker {})", device.name, index); }
};

class ProcessEngine : public ParallelPredictor::Engine {
 public:
  explicit ProcessEngine(ParallelOptions options)
      : options_(std::move(options)), pool_(std::make_shared<ShmPool>(16)) {}
  ~ProcessEngine() override { finalize(); }

  void build() override;
  std::future<std::vector<Tensor>> submit(const std::vector<Tensor>& inputs) override;
  void finalize() override;
  ParallelStats stats() const override;
  std::vector<TensorInfo> inputs() const override { return inputs_; }
  std::vector<TensorInfo> outputs() const override { return outputs_; }

 private:
  // Supervisor side.
  void spawn(Worker& w);
  void reap(Worker& w, const std::string& cause);
  void supervise();
  void on_death(Worker& w, const std::string& cause);
  void on_message(Worker& w, Message& m);
  void start_request(const std::shared_ptr<Request>& r);
  void plan_outputs(const std::shared_ptr<Request>& r);
  void dispatch();
  bool take_task(Worker& w, Task& t);
  void send_task(Worker& w, Task t);
  void complete(const std::shared_ptr<Request>& r);
  std::vector<Tensor> gather_spilled(Request& r);
  void on_shapes(const std::vector<Shape>& key, const Message& m);
  void fail(const std::shared_ptr<Request>& r, const std::string& why);
  void fail_everything_if_all_down();
  void publish_speeds();
  void shutdown_workers();
  void wake();

  ParallelOptions options_;
  std::string binary_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::shared_ptr<ShmPool> pool_;
  std::vector<TensorInfo> inputs_, outputs_;
  std::vector<bool> out_batched_fixed_, out_batched_dynamic_;
  int event_fd_ = -1;
  std::thread supervisor_;

  // Supervisor-only state.
  std::deque<Task> global_;  // tasks any worker may take (shape queries, re-runs)
  std::map<uint64_t, std::shared_ptr<Request>> active_;
  std::map<std::vector<Shape>, std::vector<TensorDesc>> shape_cache_;
  std::set<std::vector<Shape>> dynamic_shapes_;  // input shapes whose output shapes vary
  std::map<std::vector<Shape>, std::vector<std::pair<std::shared_ptr<Request>, int>>> shape_waiters_;

  // Shared with callers, under mu_.
  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  std::deque<std::shared_ptr<Request>> incoming_;
  size_t admitted_ = 0;
  uint64_t next_id_ = 1;
  bool built_ = false, stopping_ = false, finalized_ = false;
  std::string down_reason_;
  std::vector<double> speeds_;
  ParallelStats stats_;
};

void ProcessEngine::spawn(Worker& w) {
  int sv[2];
  TANDEM_CHECK(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0,
               ErrorCode::kRuntime, "socketpair failed: {}", std::strerror(errno));
  // The child's end must not already be fd 3 (dup2 onto itself would keep CLOEXEC).
  int child_fd = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
  ::close(sv[1]);
  std::vector<std::string> args = {binary_,           "worker",
                                   "--fd",            "3",
                                   "--model",         options_.model_path,
                                   "--device",        w.device.name,
                                   "--threads",       std::to_string(w.threads),
                                   "--index",         std::to_string(w.index),
                                   "--parent-pid",    std::to_string(::getpid())};
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
  if (options_.verbose) args.push_back("--verbose");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Workers share the host: oneDNN's OpenMP threads must sleep when idle instead of spinning on
  // cores that sibling workers (and the worker's own pool) need. libgomp reads this only at
  // start-up, so it goes into the environment here; a value the user set wins.
  std::vector<std::string> env_strings;
  bool has_wait_policy = false;
  for (char** e = environ; *e; ++e) {
    env_strings.emplace_back(*e);
    has_wait_policy = has_wait_policy || env_strings.back().rfind("OMP_WAIT_POLICY=", 0) == 0;
  }
  if (!has_wait_policy) env_strings.emplace_back("OMP_WAIT_POLICY=PASSIVE");
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, child_fd, 3);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, binary_.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(child_fd);
  if (rc != 0) {
    ::close(sv[0]);
    raise(ErrorCode::kRuntime, "cannot start worker '{}': {}", binary_, std::strerror(rc));
  }
  w.pid = pid;
  w.sock = sv[0];
  w.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));  // -1 on old kernels: the
                                                                   // socket's EOF still tells
  w.state = Worker::kStarting;
  w.hung.clear();
  w.spawned = Clock::now();
  ++w.generation;
}

void ProcessEngine::reap(Worker& w, const std::string& cause) {
  if (w.pid > 0) {
    int status = 0;
    pid_t r = ::waitpid(w.pid, &status, WNOHANG);
    if (r == 0) {
      ::kill(w.pid, SIGKILL);
      r = ::waitpid(w.pid, &status, 0);
    }
    std::string how = r == w.pid ? describe_status(status) : "gone";
    w.last_error = cause.empty() ? how : cause + " (" + how + ")";
  }
  if (w.sock >= 0) ::close(w.sock);
  if (w.pidfd >= 0) ::close(w.pidfd);
  w.pid = -1;
  w.sock = w.pidfd = -1;
}

void ProcessEngine::build() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    TANDEM_CHECK(!built_ && !finalized_, ErrorCode::kInvalidArgument,
                 "build() may be called once, before finalize()");
  }
  TANDEM_CHECK(!options_.model_path.empty(), ErrorCode::kInvalidArgument, "no model path given");
  TANDEM_CHECK(std::filesystem::is_regular_file(options_.model_path), ErrorCode::kNotFound,
               "model file '{}' does not exist or is not a file", options_.model_path);
  binary_ = find_worker_binary(options_.worker_binary);
  for (const WorkerSlot& slot :
       plan_workers(options_.devices, options_.core_lists, options_.workers_per_device)) {
    auto w = std::make_unique<Worker>();
    w->index = slot.index;
    w->device = slot.device;
    w->threads = slot.threads;
    workers_.push_back(std::move(w));
  }
  event_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  TANDEM_CHECK(event_fd_ >= 0, ErrorCode::kRuntime, "eventfd failed: {}", std::strerror(errno));

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
  std::vector<std::string> info_json(workers_.size());
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Worker*> owners;
    for (auto& w : workers_) {
      if (w->state != Worker::kStarting) continue;
      fds.push_back({w->sock, POLLIN, 0});
      owners.push_back(w.get());
    }
    if (fds.empty()) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - Clock::now());
    if (left.count() <= 0) {
      for (Worker* w : owners) {
        reap(*w, "");
        failures[w->index] = fmt::format("did not finish building within {} ms",
                                         options_.build_timeout.count());
        w->state = Worker::kDown;
      }
      break;
    }
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (n <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      Worker& w = *owners[i];
      std::optional<Message> m;
      try {
        m = recv_message(w.sock);
      } catch (const Error& e) {
        m.reset();
      }
      if (m && m->type == MsgType::kBuildFinish) {
        w.state = Worker::kIdle;
        info_json[w.index] = m->text;
        if (options_.verbose) std::printf("Success to build model %d\n", w.index);
        std::fflush(stdout);
      } else {
        std::string why = m && m->type == MsgType::kError ? m->text : "";
        reap(w, "");
        failures[w.index] = why.empty() ? "worker " + w.last_error + " while building" : why;
        w.state = Worker::kDown;
      }
    }
  }
  if (!failures.empty()) {
    for (auto& w : workers_) reap(*w, "");
    ::close(event_fd_);
    event_fd_ = -1;
    std::string msg = fmt::format("build failed on {} of {} workers:", failures.size(),
                                  workers_.size());
    for (auto& [idx, why] : failures)
      msg += fmt::format("\n  {}: {}", workers_[idx]->name(), why);
    workers_.clear();
    throw Error(ErrorCode::kRuntime, msg);
  }
  auto j = nlohmann::json::parse(info_json[0]);
  inputs_ = infos_from_json(j.at("inputs"));
  outputs_ = infos_from_json(j.at("outputs"));
  {
    std::lock_guard<std::mutex> lock(mu_);
    built_ = true;
    speeds_.assign(workers_.size(), 1.0);
    for (auto& w : workers_) {
      DeviceStats d;
      d.device = w->device.name;
      d.worker = w->index;
      d.pid = w->pid;
      stats_.devices.push_back(d);
    }
  }
  supervisor_ = std::thread([this] { supervise(); });
}

std::future<std::vector<Tensor>> ProcessEngine::submit(const std::vector<Tensor>& inputs) {
  auto r = std::make_shared<Request>();
  r->start = Clock::now();  // the overhead counts the copy into shared memory too
  std::vector<double> speeds;
  {
    std::lock_guard<std::mutex> lock(mu_);
    TANDEM_CHECK(built_, ErrorCode::kInvalidArgument, "predict before build(): call build() first");
    TANDEM_CHECK(!stopping_, ErrorCode::kInvalidArgument,
                 "the predictor is finalized; create a new one");
    TANDEM_CHECK(down_reason_.empty(), ErrorCode::kRuntime, "{}", down_reason_);
    TANDEM_CHECK(admitted_ < options_.queue_capacity, ErrorCode::kRuntime,
                 "request queue is full ({} requests in flight); wait for some to finish or "
                 "raise queue_capacity",
                 admitted_);
    ++admitted_;
    r->id = next_id_++;
    speeds = speeds_;
  }
  try {
    r->in = analyse_inputs(inputs_, inputs);
    r->shards = split_batch(r->in.batch, speeds, r->in.fixed_batch);
    r->layout = layout_inputs(r->in, r->shards);
    r->in_buf = pool_->acquire(r->layout.input_bytes);
    write_inputs(r->in, r->layout, r->in_buf->data());
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    --admitted_;
    ++stats_.failed_requests;
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
  ssize_t n = ::write(event_fd_, &one, sizeof(one));
  (void)n;
}

void ProcessEngine::start_request(const std::shared_ptr<Request>& r) {
  active_[r->id] = r;
  size_t n = r->shards.size();
  r->shard_shapes.assign(n, {});
  r->shape_known.assign(n, false);
  r->shard_done.assign(n, false);
  r->remaining = static_cast<int>(n);
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
    if (waiters.empty()) global_.push_back({Task::kShapes, r, static_cast<int>(s), 0});
    waiters.emplace_back(r, static_cast<int>(s));
  }
  plan_outputs(r);
}

void ProcessEngine::plan_outputs(const std::shared_ptr<Request>& r) {
  if (r->finished) return;
  for (bool k : r->shape_known)
    if (!k) return;
  if (r->dynamic_outputs) {
    r->spilled.resize(r->shards.size());
    r->spilled_desc.resize(r->shards.size());
    for (size_t s = 0; s < r->shards.size(); ++s)
      workers_[r->shards[s].worker]->queue.push_back({Task::kPredict, r, static_cast<int>(s), 0});
    return;
  }
  try {
    std::vector<std::string> names;
    for (const auto& o : outputs_) names.push_back(o.name);
    layout_outputs(r->layout, r->in, r->shards, batched_outputs(outputs_, r->in.fixed_batch),
                   r->shard_shapes, names);
    r->out_buf = pool_->acquire(r->layout.output_bytes);
  } catch (const std::exception& e) {
    fail(r, fmt::format("request {}: {}", r->id, e.what()));
    return;
  }
  for (size_t s = 0; s < r->shards.size(); ++s)
    workers_[r->shards[s].worker]->queue.push_back({Task::kPredict, r, static_cast<int>(s), 0});
}

bool ProcessEngine::take_task(Worker& w, Task& t) {
  auto pop_live = [&](std::deque<Task>& q, bool from_back) {
    while (!q.empty()) {
      Task cand = from_back ? q.back() : q.front();
      if (from_back) q.pop_back();
      else q.pop_front();
      if (!cand.req->finished) {
        t = cand;
        return true;
      }
    }
    return false;
  };
  if (pop_live(w.queue, false) || pop_live(global_, false)) return true;
  // Steal from the most loaded queue so an idle worker never waits behind a busy one.
  Worker* victim = nullptr;
  for (auto& o : workers_)
    if (o.get() != &w && !o->queue.empty() && (!victim || o->queue.size() > victim->queue.size()))
      victim = o.get();
  return victim && pop_live(victim->queue, true);
}

void ProcessEngine::send_task(Worker& w, Task t) {
  Request& r = *t.req;
  Message m;
  m.type = t.kind == Task::kShapes ? MsgType::kShapes : MsgType::kPredict;
  m.request_id = r.id;
  m.shard = static_cast<uint32_t>(t.shard);
  m.inputs = r.layout.shard_inputs[t.shard];
  if (t.kind == Task::kPredict) {
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
    sent = send_message(w.sock, m);
  } catch (const Error&) {
    sent = false;
  }
  if (!sent) {
    global_.push_front(t);  // the worker is going away; its death is noticed by poll
    return;
  }
  w.inflight = t;
  w.state = Worker::kBusy;
  w.deadline = Clock::now() + options_.deadline;
}

void ProcessEngine::dispatch() {
  for (auto& w : workers_) {
    if (w->state != Worker::kIdle) continue;
    Task t;
    if (take_task(*w, t)) send_task(*w, t);
  }
}

std::vector<Tensor> ProcessEngine::gather_spilled(Request& r) {
  std::vector<bool> batched = batched_outputs(outputs_, r.in.fixed_batch);
  std::vector<Tensor> outs;
  for (size_t o = 0; o < outputs_.size(); ++o) {
    const TensorDesc& first = r.spilled_desc[0][o];
    if (!batched[o] || first.shape.empty()) {
      outs.push_back(Tensor::copy_of(first.dtype, first.shape, r.spilled[0]->data() + first.offset,
                                     outputs_[o].name));
      continue;
    }
    Shape total = first.shape;
    total[0] = 0;
    for (size_t s = 0; s < r.shards.size(); ++s) {
      const TensorDesc& d = r.spilled_desc[s][o];
      TANDEM_CHECK(d.dtype == first.dtype && d.shape.size() == first.shape.size() &&
                       std::equal(d.shape.begin() + 1, d.shape.end(), first.shape.begin() + 1),
                   ErrorCode::kUnsupported,
                   "output '{}' cannot be gathered along axis 0: shards gave {} and {}",
                   outputs_[o].name, shape_str(first.shape), shape_str(d.shape));
      total[0] += d.shape[0];
    }
    Tensor t(first.dtype, total, outputs_[o].name);
    size_t off = 0;
    for (size_t s = 0; s < r.shards.size(); ++s) {
      const TensorDesc& d = r.spilled_desc[s][o];
      size_t bytes = static_cast<size_t>(shape_numel(d.shape)) * dtype_size(d.dtype);
      std::memcpy(t.data<uint8_t>() + off, r.spilled[s]->data() + d.offset, bytes);
      off += bytes;
    }
    outs.push_back(std::move(t));
  }
  return outs;
}

void ProcessEngine::complete(const std::shared_ptr<Request>& r) {
  std::vector<Tensor> outs;
  if (r->dynamic_outputs) {
    try {
      outs = gather_spilled(*r);
    } catch (const std::exception& e) {
      fail(r, fmt::format("request {}: {}", r->id, e.what()));
      return;
    }
    r->spilled.clear();
  } else {
    std::shared_ptr<void> keeper = r->out_buf;
    for (size_t o = 0; o < outputs_.size(); ++o)
      outs.push_back(Tensor::adopt(r->layout.output_dtype[o], r->layout.output_shape[o],
                                   r->out_buf->data() + r->layout.output_offset[o], keeper,
                                   outputs_[o].name));
  }
  r->finished = true;
  r->in_buf.reset();
  r->out_buf.reset();
  double wall = ms_since(r->start);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    stats_.overhead_ms_last = std::max(0.0, wall - r->max_compute_ms);
    stats_.overhead_ms_total += stats_.overhead_ms_last;
    --admitted_;
  }
  active_.erase(r->id);
  publish_speeds();  // so a caller reading stats() right after sees this request counted
  r->promise.set_value(std::move(outs));
  idle_cv_.notify_all();
}

void ProcessEngine::fail(const std::shared_ptr<Request>& r, const std::string& why) {
  if (r->finished) return;
  r->finished = true;
  r->in_buf.reset();
  r->out_buf.reset();
  r->spilled.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.failed_requests;
    --admitted_;
  }
  active_.erase(r->id);
  r->promise.set_exception(std::make_exception_ptr(Error(ErrorCode::kRuntime, why)));
  idle_cv_.notify_all();
}

void ProcessEngine::publish_speeds() {
  std::lock_guard<std::mutex> lock(mu_);
  double known = 0;
  int n_known = 0;
  for (auto& w : workers_)
    if (w->speed > 0) {
      known += w->speed;
      ++n_known;
    }
  double fallback = n_known ? known / n_known : 1.0;
  bool any_up = false;
  for (auto& w : workers_) any_up = any_up || w->state == Worker::kIdle || w->state == Worker::kBusy;
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& w = *workers_[i];
    bool usable = w.state == Worker::kIdle || w.state == Worker::kBusy ||
                  (!any_up && w.state == Worker::kStarting);
    speeds_[i] = usable ? (w.speed > 0 ? w.speed : fallback) : 0.0;
    DeviceStats& d = stats_.devices[i];
    d.up = w.state != Worker::kDown;
    d.restarts = w.restarts;
    d.items = w.items;
    d.busy_ms = w.busy_ms;
    d.items_per_s = w.speed;
    d.last_error = w.last_error;
    d.pid = w.pid;
  }
}

void ProcessEngine::on_shapes(const std::vector<Shape>& key, const Message& m) {
  bool dynamic = m.type == MsgType::kReply && m.text == kDynamicOutputs;
  if (m.type == MsgType::kReply) {
    if (dynamic) dynamic_shapes_.insert(key);
    else shape_cache_[key] = m.outputs;
  }
  auto waiters = std::move(shape_waiters_[key]);
  shape_waiters_.erase(key);
  for (auto& [wr, s] : waiters) {
    if (m.type == MsgType::kError) {
      fail(wr, fmt::format("request {}: {}", wr->id, m.text));
      continue;
    }
    if (dynamic) wr->dynamic_outputs = true;
    else wr->shard_shapes[s] = m.outputs;
    wr->shape_known[s] = true;
    plan_outputs(wr);
  }
}

void ProcessEngine::on_message(Worker& w, Message& m) {
  // Descriptors only come with the reply to a shard whose outputs the worker kept; take
  // ownership at once so none can leak.
  std::vector<std::unique_ptr<ShmBuffer>> received;
  for (auto& [id, fd] : m.fds) {
    try {
      received.push_back(std::make_unique<ShmBuffer>(id, fd));
    } catch (const Error&) {
    }
  }
  if (m.type == MsgType::kBuildFinish) {
    if (w.state == Worker::kStarting) w.state = Worker::kIdle;
    return;
  }
  if (m.type == MsgType::kError && w.state == Worker::kStarting) {
    // A restarted worker that can no longer build: count it as a death.
    on_death(w, "rebuild failed: " + m.text);
    return;
  }
  if (!w.inflight || w.inflight->req->id != m.request_id ||
      static_cast<uint32_t>(w.inflight->shard) != m.shard) {
    return;  // stale: not the answer this worker owes
  }
  Task t = *w.inflight;
  w.inflight.reset();
  w.state = Worker::kIdle;
  std::shared_ptr<Request> r = t.req;
  if (r->finished) return;
  if (t.kind == Task::kShapes) {
    std::vector<Shape> key;
    for (const auto& d : r->layout.shard_inputs[t.shard]) key.push_back(d.shape);
    if (m.type == MsgType::kError) m.text = fmt::format("device {}: {}", w.name(), m.text);
    on_shapes(key, m);
    return;
  }
  if (m.type == MsgType::kError) {
    fail(r, fmt::format("request {}: device {}: {}", r->id, w.name(), m.text));
    return;
  }
  if (r->shard_done[t.shard]) return;
  if (r->dynamic_outputs) {
    if (received.empty()) {
      fail(r, fmt::format("request {}: device {} returned no output buffer", r->id, w.name()));
      return;
    }
    r->spilled[t.shard] = std::move(received[0]);
    r->spilled_desc[t.shard] = m.outputs;
  }
  r->shard_done[t.shard] = true;
  int64_t items = r->shards[t.shard].count;
  w.items += items;
  w.busy_ms += m.compute_ms;
  if (m.compute_ms > 0) {
    double inst = items * 1000.0 / m.compute_ms;
    w.speed = w.speed > 0 ? 0.7 * w.speed + 0.3 * inst : inst;
  }
  r->max_compute_ms = std::max(r->max_compute_ms, m.compute_ms);
  if (--r->remaining == 0) complete(r);
}

void ProcessEngine::on_death(Worker& w, const std::string& cause) {
  reap(w, cause);
  auto requeue = [&](Task t, bool was_running) {
    if (t.req->finished) return;
    if (was_running && ++t.attempts >= kMaxShardAttempts) {
      fail(t.req, fmt::format("request {}: shard {} was lost with {} workers; last: {} {}",
                              t.req->id, t.shard, t.attempts, w.name(), w.last_error));
      return;
    }
    if (was_running) {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.shards_rerun;
    }
    global_.push_front(t);
  };
  if (w.inflight) requeue(*w.inflight, true);
  w.inflight.reset();
  while (!w.queue.empty()) {
    requeue(w.queue.front(), false);
    w.queue.pop_front();
  }
  bool stopping;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping = stopping_;
  }
  w.state = Worker::kDown;
  if (!stopping && w.restarts < options_.max_restarts) {
    ++w.restarts;
    try {
      spawn(w);
    } catch (const Error& e) {
      w.last_error += fmt::format("; restart failed: {}", e.what());
      w.state = Worker::kDown;
    }
  }
  fail_everything_if_all_down();
}

void ProcessEngine::fail_everything_if_all_down() {
  for (auto& w : workers_)
    if (w->state != Worker::kDown) return;
  std::string why = "all workers are down:";
  for (auto& w : workers_)
    why += fmt::format(" {}: {} after {} restarts;", w->name(), w->last_error, w->restarts);
  {
    std::lock_guard<std::mutex> lock(mu_);
    down_reason_ = why;
  }
  auto active = active_;
  for (auto& [id, r] : active) fail(r, fmt::format("request {}: {}", id, why));
  global_.clear();
}

void ProcessEngine::supervise() {
  for (;;) {
    // New requests.
    std::deque<std::shared_ptr<Request>> fresh;
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      fresh.swap(incoming_);
      stopping = stopping_;
    }
    for (auto& r : fresh) {
      if (!down_reason_.empty()) fail(r, fmt::format("request {}: {}", r->id, down_reason_));
      else start_request(r);
    }
    dispatch();
    publish_speeds();
    if (stopping && active_.empty()) break;

    std::vector<pollfd> fds{{event_fd_, POLLIN, 0}};
    struct Owner {
      Worker* w;
      bool is_pidfd;
      int generation;
    };
    std::vector<Owner> owners{{nullptr, false, 0}};
    auto next_deadline = Clock::now() + std::chrono::seconds(1);
    for (auto& w : workers_) {
      if (w->sock >= 0) {
        fds.push_back({w->sock, POLLIN, 0});
        owners.push_back({w.get(), false, w->generation});
      }
      if (w->pidfd >= 0) {
        fds.push_back({w->pidfd, POLLIN, 0});
        owners.push_back({w.get(), true, w->generation});
      }
      if (w->state == Worker::kBusy) next_deadline = std::min(next_deadline, w->deadline);
      if (w->state == Worker::kStarting)
        next_deadline = std::min(next_deadline, w->spawned + options_.build_timeout);
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_deadline - Clock::now());
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(0, wait.count()) + 1));
    if (n > 0 && (fds[0].revents & POLLIN)) {
      uint64_t v;
      ssize_t got = ::read(event_fd_, &v, sizeof(v));
      (void)got;
    }
    for (size_t i = 1; n > 0 && i < fds.size(); ++i) {
      Worker* w = owners[i].w;
      // Skip what an earlier entry of this round already handled (death, restart).
      if (!fds[i].revents || w->sock < 0 || w->generation != owners[i].generation) continue;
      if (owners[i].is_pidfd) {
        on_death(*w, w->hung);
        continue;
      }
      if (fds[i].revents & POLLIN) {
        std::optional<Message> m;
        try {
          m = recv_message(w->sock);
        } catch (const Error& e) {
          on_death(*w, fmt::format("protocol error: {}", e.what()));
          continue;
        }
        if (!m) on_death(*w, w->hung);
        else on_message(*w, *m);
      } else if (fds[i].revents & (POLLHUP | POLLERR)) {
        on_death(*w, w->hung);
      }
    }
    // Deadlines: a worker that owes an answer past its deadline is hung. Kill it; its death
    // (seen through the pidfd or socket) re-runs the shard elsewhere.
    for (auto& w : workers_) {
      if (!w->hung.empty() || w->pid <= 0) continue;
      if (w->state == Worker::kBusy && Clock::now() > w->deadline) {
        w->hung = fmt::format("no reply within the {} ms deadline (hung)", options_.deadline.count());
        ::kill(w->pid, SIGKILL);
      } else if (w->state == Worker::kStarting &&
                 Clock::now() > w->spawned + options_.build_timeout) {
        w->hung = fmt::format("did not rebuild within {} ms", options_.build_timeout.count());
        ::kill(w->pid, SIGKILL);
      }
    }
  }
}

void ProcessEngine::shutdown_workers() {
  for (auto& w : workers_) {
    if (w->sock < 0) continue;
    Message bye;
    bye.type = MsgType::kExit;
    try {
      send_message(w->sock, bye);
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
  }
}

void ProcessEngine::finalize() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finalized_) return;
    finalized_ = true;
    stopping_ = true;
  }
  if (supervisor_.joinable()) {
    wake();
    supervisor_.join();
  }
  shutdown_workers();
  if (event_fd_ >= 0) ::close(event_fd_);
  event_fd_ = -1;
  pool_->clear();
}

ParallelStats ProcessEngine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace

std::unique_ptr<ParallelPredictor::Engine> make_process_engine(ParallelOptions options) {
  return std::make_unique<ProcessEngine>(std::move(options));
}

}  // namespace tandem::parallel

#include "server/model_host.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <new>
#include <thread>
#include <tuple>

#include "core/error.h"
#include "server/batcher.h"
#include "server/kserve.h"
#include "server/metrics.h"
#include "tandem/parallel.h"

namespace tandem::server {

namespace fs = std::filesystem;

int http_status(Failure failure) {
  switch (failure) {
    case Failure::kBadRequest:
      return 400;
    case Failure::kNotFound:
      return 404;
    case Failure::kUnavailable:
      return 503;
    case Failure::kTimeout:
      return 504;
    case Failure::kInternal:
      break;
  }
  return 500;
}

std::pair<Failure, std::string> classify(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const ServeError& e) {
    return {e.failure(), e.what()};
  } catch (const QueueFull& e) {
    return {Failure::kUnavailable, e.what()};
  } catch (const Error& e) {
    return {e.code() == ErrorCode::kInvalidArgument ? Failure::kBadRequest : Failure::kInternal,
            e.what()};
  } catch (const std::bad_alloc&) {
    return {Failure::kInternal, "out of memory"};
  } catch (const std::exception& e) {
    return {Failure::kInternal, e.what()};
  } catch (...) {
    return {Failure::kInternal, "internal error"};
  }
}

namespace {

using Clock = std::chrono::steady_clock;

// One served version of a model. Everything but `built` and the metrics is written before the
// version is marked built (release) and read only after that is seen (acquire).
struct Served {
  std::string name;
  ModelVersion version;
  ModelConfig config;
  std::unique_ptr<ParallelPredictor> predictor;
  std::unique_ptr<Batcher> batcher;
  ModelInfo info;
  ModelMetrics metrics;
  std::atomic<bool> built{false};

  ~Served() { stop(); }

  // Built, and at least one worker up: a model whose every device is restarting or marked down
  // cannot answer, and says so.
  bool ready() const {
    if (!built.load(std::memory_order_acquire)) return false;
    for (const DeviceStats& d : predictor->stats().devices)
      if (d.state == "up") return true;
    return false;
  }
  std::string labels() const {
    return fmt::format("model=\"{}\",version=\"{}\"", label_value(name),
                       label_value(version.version));
  }
  // Answers what is queued and in flight, then stops the workers. Idempotent.
  void stop() {
    if (batcher) batcher->stop();
    if (predictor) predictor->finalize();
  }
};

uint64_t version_number(const std::string& version) {
  return std::stoull(version);
}

// One model folder of the repository.
struct Slot {
  std::map<uint64_t, std::shared_ptr<Served>> versions;  // served, by number
  std::string signature;                                 // of the scan they were built from
  std::string state = "UNAVAILABLE";
  std::string reason;
  bool unloaded = false;  // by the repository API: not counted against readiness
};

std::shared_ptr<Served> make_served(const ModelEntry& entry, const ModelVersion& version) {
  auto s = std::make_shared<Served>();
  s->name = entry.name;
  s->version = version;
  s->config = entry.config;
  return s;
}

}  // namespace

struct ModelHost::Impl {
  ServeOptions options;
  fs::path root;

  mutable std::mutex mutex;  // guards slots and retired (not the models' own state)
  std::map<std::string, Slot> slots;
  // Versions unloaded or replaced; stopped once no request holds them any more.
  std::vector<std::shared_ptr<Served>> retired;

  std::mutex load_mutex;               // one load, unload or poll at a time
  std::atomic<bool> draining{false};   // refusing requests
  std::atomic<bool> not_ready{false};  // readiness false: a shutdown has begun

  // Retires unused versions and polls the repository (model_control "poll").
  std::thread maintenance;
  std::mutex maintenance_mutex;
  std::condition_variable maintenance_wake;
  bool maintenance_stop = false;

  std::shared_ptr<Served> find(const std::string& name, const std::string& version) const {
    std::lock_guard lock(mutex);
    auto it = slots.find(name);
    if (it == slots.end() || it->second.versions.empty())
      throw ServeError(Failure::kNotFound, fmt::format("unknown model '{}'", name.substr(0, 256)));
    const auto& versions = it->second.versions;
    if (version.empty()) return versions.rbegin()->second;
    for (const auto& [number, served] : versions)
      if (served->version.version == version) return served;
    std::string list;
    for (const auto& [number, served] : versions)
      list += (list.empty() ? "" : ", ") + served->version.version;
    throw ServeError(Failure::kNotFound,
                     fmt::format("model '{}' has no version '{}' being served (serving {})", name,
                                 version.substr(0, 64), list));
  }

  std::vector<std::string> versions_of(const std::string& name) const {
    std::lock_guard lock(mutex);
    std::vector<std::string> out;
    auto it = slots.find(name);
    if (it != slots.end())
      for (const auto& [number, served] : it->second.versions)
        out.push_back(served->version.version);
    return out;
  }

  void build(Served& m) const {
    const ModelConfig& c = m.config;
    ParallelOptions o;
    o.model_path = m.version.model_path.string();
    o.devices = c.devices;
    o.workers_per_device = c.workers;
    o.mode = c.mode;
    o.deadline = std::chrono::milliseconds(static_cast<int64_t>(options.deadline_s * 1000));
    try {
      m.predictor = std::make_unique<ParallelPredictor>(o);
      m.predictor->build();
      m.info.name = m.name;
      m.info.version = m.version.version;
      m.info.inputs = m.predictor->inputs();
      m.info.outputs = m.predictor->outputs();
      // Only dtypes the protocol can carry (no string tensors).
      for (const auto* list : {&m.info.inputs, &m.info.outputs})
        for (const TensorInfo& t : *list) (void)kserve_datatype(t.dtype);
    } catch (const Error& e) {
      m.stop();
      raise(e.code(), "model '{}' version {} ({}): {}", m.name, m.version.version, o.model_path,
            e.what());
    }
    if (c.warmup.value_or(c.dynamic_batching)) warm_up(m);
    BatchPolicy policy;
    policy.max_batch_size = c.dynamic_batching ? c.max_batch_size : 0;
    policy.max_queue_delay = c.max_queue_delay;
    policy.preferred_batch_sizes = c.preferred_batch_sizes;
    // Without merging, each request is its own run: let the runner's queue (64) pipeline them.
    policy.max_in_flight = c.dynamic_batching ? 2 : ParallelOptions{}.queue_capacity;
    m.batcher =
        std::make_unique<Batcher>(*m.predictor, m.info.inputs, m.info.outputs, policy, m.metrics);
    m.built.store(true, std::memory_order_release);
    std::printf("tandem serve: model '%s' version %s ready (%zu devices, %s%s)\n", m.name.c_str(),
                m.version.version.c_str(), c.devices.size(), c.mode.c_str(),
                m.batcher->merges()
                    ? fmt::format(", dynamic batching up to {}", c.max_batch_size).c_str()
                    : "");
    std::fflush(stdout);
  }

  // One run of zeros per batch size 1..max_batch_size (see ModelConfig::warmup). Needs every dim
  // but the batch fixed: other symbolic dims (a sequence length) have no size to warm up.
  void warm_up(Served& m) const {
    const int64_t most = std::max<int64_t>(1, m.config.max_batch_size);
    for (const TensorInfo& t : m.info.inputs)
      for (size_t d = 1; d < t.shape.size(); ++d)
        if (t.shape[d] < 0) {
          std::printf(
              "tandem serve: model '%s': no warm-up (input '%s' has symbolic dims besides "
              "the batch)\n",
              m.name.c_str(), t.name.c_str());
          return;
        }
    const auto start = Clock::now();
    for (int64_t b = 1; b <= most; ++b) {
      if (draining.load()) return;
      std::vector<Tensor> inputs;
      for (const TensorInfo& t : m.info.inputs) {
        Shape s = t.shape;
        if (!s.empty() && s[0] < 0) s[0] = b;
        Tensor z(t.dtype, s, t.name);
        std::memset(z.data<uint8_t>(), 0, z.nbytes());
        inputs.push_back(std::move(z));
      }
      try {
        (void)m.predictor->predict(inputs);
      } catch (const Error& e) {
        // Zeros are not every model's valid input; real requests may still be. Serve unwarmed.
        std::printf("tandem serve: model '%s': warm-up stopped at batch %lld: %s\n", m.name.c_str(),
                    static_cast<long long>(b), e.what());
        return;
      }
    }
    std::printf("tandem serve: model '%s' version %s warmed up batch sizes 1..%lld in %.1f s\n",
                m.name.c_str(), m.version.version.c_str(), static_cast<long long>(most),
                std::chrono::duration<double>(Clock::now() - start).count());
  }

  // Builds every version of `entry` beside what is served, then swaps them in; the old ones
  // answer until then and are retired after. On failure the old versions keep serving.
  // Caller holds load_mutex.
  void load_entry(const ModelEntry& entry) {
    std::map<uint64_t, std::shared_ptr<Served>> fresh;
    {
      std::lock_guard lock(mutex);
      Slot& slot = slots[entry.name];
      if (slot.versions.empty()) slot.state = "LOADING";
      slot.unloaded = false;
    }
    try {
      for (const ModelVersion& v : entry.versions) {
        if (draining.load()) throw ServeError(Failure::kUnavailable, "the server is stopping");
        std::shared_ptr<Served> s = make_served(entry, v);
        build(*s);
        fresh.emplace(version_number(v.version), std::move(s));
      }
    } catch (...) {
      const std::string why = classify(std::current_exception()).second;
      {
        std::lock_guard lock(mutex);
        Slot& slot = slots[entry.name];
        slot.reason = why;
        if (slot.versions.empty()) slot.state = "UNAVAILABLE";
        // A failed reload keeps the old versions, but not the file it failed on: the next poll
        // retries only when the repository changes again.
        slot.signature = entry.signature;
      }
      throw;
    }
    std::lock_guard lock(mutex);
    Slot& slot = slots[entry.name];
    for (auto& [number, old] : slot.versions) retired.push_back(std::move(old));
    slot.versions = std::move(fresh);
    slot.signature = entry.signature;
    slot.state = "READY";
    slot.reason.clear();
  }

  void unload_slot(const std::string& name, const std::string& reason) {
    std::lock_guard lock(mutex);
    auto it = slots.find(name);
    if (it == slots.end()) return;
    for (auto& [number, old] : it->second.versions) retired.push_back(std::move(old));
    it->second.versions.clear();
    it->second.state = "UNAVAILABLE";
    it->second.reason = reason;
  }

  // Stops retired versions no request holds. `wait`: until every one is stopped (bounded by the
  // request timeout, past which a request has been answered with 504 anyway).
  void release_retired(bool wait) {
    const auto give_up = Clock::now() + std::chrono::duration<double>(options.request_timeout_s);
    for (;;) {
      std::vector<std::shared_ptr<Served>> done;
      bool left = false;
      {
        std::lock_guard lock(mutex);
        for (auto it = retired.begin(); it != retired.end();) {
          if (it->use_count() == 1) {
            done.push_back(std::move(*it));
            it = retired.erase(it);
          } else {
            ++it;
          }
        }
        left = !retired.empty();
      }
      for (auto& s : done) s->stop();  // outside the lock: stopping workers takes a while
      if (!wait || !left || Clock::now() > give_up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  void poll() {
    std::lock_guard load_lock(load_mutex);
    std::vector<std::string> names;
    try {
      names = list_models(options.repository);
    } catch (const Error& e) {
      std::fprintf(stderr, "tandem serve: repository poll: %s\n", e.what());
      return;
    }
    std::map<std::string, std::string> signatures;
    {
      std::lock_guard lock(mutex);
      for (const auto& [name, slot] : slots)
        if (!slot.unloaded) signatures[name] = slot.signature;
    }
    for (const std::string& name : names) {
      if (draining.load()) return;
      try {
        ModelEntry entry = scan_model(options.repository, name);
        auto it = signatures.find(name);
        if (it != signatures.end() && it->second == entry.signature) continue;
        std::printf("tandem serve: repository poll: %s model '%s'\n",
                    it == signatures.end() ? "loading new" : "reloading changed", name.c_str());
        std::fflush(stdout);
        load_entry(entry);
      } catch (...) {
        const std::string why = classify(std::current_exception()).second;
        std::lock_guard lock(mutex);
        Slot& slot = slots[name];
        // An unchanged broken folder fails the same way each poll: say it once.
        if (slot.reason != why)
          std::fprintf(stderr, "tandem serve: repository poll: model '%s': %s\n", name.c_str(),
                       why.c_str());
        slot.reason = why;
        if (slot.versions.empty()) slot.state = "UNAVAILABLE";
        // Keep the failed scan's signature unknown so a fix is picked up; an unchanged broken
        // folder is retried each poll, which costs a scan (and a build only when it scans).
      }
    }
    // Folders that are gone.
    for (const auto& [name, signature] : signatures)
      if (std::find(names.begin(), names.end(), name) == names.end()) {
        std::printf("tandem serve: repository poll: unloading removed model '%s'\n", name.c_str());
        std::fflush(stdout);
        unload_slot(name, "removed from the repository");
        std::lock_guard lock(mutex);
        slots.erase(name);
      }
  }

  void maintenance_loop() {
    const bool polling = options.model_control == "poll";
    auto next_poll = Clock::now() + std::chrono::duration<double>(options.repository_poll_s);
    std::unique_lock lock(maintenance_mutex);
    while (!maintenance_stop) {
      maintenance_wake.wait_for(lock, std::chrono::milliseconds(200));
      if (maintenance_stop) break;
      lock.unlock();
      release_retired(false);
      if (polling && Clock::now() >= next_poll && !draining.load()) {
        poll();
        next_poll = Clock::now() + std::chrono::duration<double>(options.repository_poll_s);
      }
      lock.lock();
    }
  }

  void stop_maintenance() {
    {
      std::lock_guard lock(maintenance_mutex);
      maintenance_stop = true;
    }
    maintenance_wake.notify_all();
    if (maintenance.joinable()) maintenance.join();
  }
};

ModelHost::ModelHost(const ServeOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  for (ModelEntry& e : scan_repository(options.repository)) {
    Slot& slot = impl_->slots[e.name];
    slot.signature = e.signature;
    slot.state = "LOADING";
    for (const ModelVersion& v : e.versions)
      slot.versions.emplace(version_number(v.version), make_served(e, v));
  }
}

ModelHost::~ModelHost() {
  impl_->draining.store(true);
  impl_->stop_maintenance();
}

void ModelHost::build_all(const std::function<bool()>& stop) {
  std::vector<std::pair<std::string, std::shared_ptr<Served>>> all;
  {
    std::lock_guard lock(impl_->mutex);
    for (const auto& [name, slot] : impl_->slots)
      for (const auto& [number, served] : slot.versions) all.emplace_back(name, served);
  }
  for (auto& [name, served] : all) {
    if (stop()) return;
    impl_->build(*served);
    std::lock_guard lock(impl_->mutex);
    Slot& slot = impl_->slots[name];
    if (std::all_of(slot.versions.begin(), slot.versions.end(),
                    [](const auto& v) { return v.second->built.load(); }))
      slot.state = "READY";
  }
  impl_->maintenance = std::thread([this] { impl_->maintenance_loop(); });
}

bool ModelHost::ready() const {
  if (impl_->draining.load() || impl_->not_ready.load()) return false;
  std::vector<std::shared_ptr<Served>> all;
  {
    std::lock_guard lock(impl_->mutex);
    for (const auto& [name, slot] : impl_->slots) {
      if (slot.unloaded) continue;
      if (slot.versions.empty()) return false;  // failed to load: the server is not whole
      for (const auto& [number, served] : slot.versions) all.push_back(served);
    }
  }
  return std::all_of(all.begin(), all.end(), [](const auto& s) { return s->ready(); });
}

bool ModelHost::model_ready(const std::string& name, const std::string& version) const {
  std::shared_ptr<Served> m = impl_->find(name, version);
  return m->ready() && !impl_->draining.load() && !impl_->not_ready.load();
}

ModelInfo ModelHost::info(const std::string& name, const std::string& version) const {
  std::shared_ptr<Served> m = impl_->find(name, version);
  if (!m->built.load(std::memory_order_acquire))
    throw ServeError(Failure::kUnavailable, fmt::format("model '{}' is still being built", name));
  ModelInfo info = m->info;
  info.versions = impl_->versions_of(name);
  return info;
}

InferResult ModelHost::infer(const std::string& name, const std::string& version,
                             const std::function<std::vector<Tensor>(const ModelInfo&)>& decode,
                             const std::function<bool()>& cancelled) {
  if (impl_->draining.load()) throw ServeError(Failure::kUnavailable, "the server is stopping");
  std::shared_ptr<Served> m = impl_->find(name, version);
  ++m->metrics.requests;
  try {
    if (!m->built.load(std::memory_order_acquire))
      throw ServeError(Failure::kUnavailable,
                       fmt::format("model '{}' is still being built", m->name));
    std::vector<Tensor> inputs = match_inputs(m->info.inputs, decode(m->info));
    Batcher::Ticket ticket = m->batcher->enqueue(std::move(inputs));
    const auto give_up =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(impl_->options.request_timeout_s));
    // Without a cancel check one wait does; with one, waits of at most 20 ms between checks.
    const auto slice =
        cancelled ? Clock::duration(std::chrono::milliseconds(20)) : give_up - Clock::now();
    for (;;) {
      const auto now = Clock::now();
      if (ticket.result.wait_for(std::min(slice, std::max(give_up - now, Clock::duration(0)))) ==
          std::future_status::ready)
        break;
      if (Clock::now() >= give_up) {
        ticket.cancelled->store(true);
        throw ServeError(Failure::kTimeout,
                         fmt::format("model '{}' did not answer within {} s (--request-timeout)",
                                     m->name, impl_->options.request_timeout_s));
      }
      if (cancelled && cancelled()) {
        ticket.cancelled->store(true);
        throw ServeError(Failure::kTimeout,
                         "the client cancelled the request or its deadline passed");
      }
    }
    InferResult result;
    result.version = m->version.version;
    result.outputs = ticket.result.get();
    for (size_t i = 0; i < result.outputs.size() && i < m->info.outputs.size(); ++i)
      if (result.outputs[i].name().empty()) result.outputs[i].set_name(m->info.outputs[i].name);
    return result;
  } catch (...) {
    ++m->metrics.failures;
    throw;
  }
}

std::vector<ModelStatistics> ModelHost::statistics(const std::string& name,
                                                   const std::string& version) const {
  std::vector<std::shared_ptr<Served>> chosen;
  if (!name.empty() && !version.empty()) {
    chosen.push_back(impl_->find(name, version));
  } else {
    if (!name.empty()) (void)impl_->find(name, "");  // kNotFound for an unknown model
    std::lock_guard lock(impl_->mutex);
    for (const auto& [n, slot] : impl_->slots)
      if (name.empty() || n == name)
        for (const auto& [number, served] : slot.versions) chosen.push_back(served);
  }
  std::vector<ModelStatistics> out;
  for (const auto& m : chosen) {
    ModelStatistics s;
    s.name = m->name;
    s.version = m->version.version;
    s.ready = m->ready();
    s.requests = m->metrics.requests.load();
    s.failures = m->metrics.failures.load();
    s.batches = m->metrics.batches.load();
    std::tie(s.queued, s.queue_seconds) = m->metrics.queue_seconds.count_and_sum();
    s.compute_seconds = m->metrics.compute_seconds.count_and_sum().second;
    s.batch_items = static_cast<uint64_t>(m->metrics.batch_size.count_and_sum().second);
    if (m->built.load(std::memory_order_acquire)) {
      ParallelStats p = m->predictor->stats();
      s.shards_rerun = p.shards_rerun;
      s.devices = std::move(p.devices);
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<RepositoryModel> ModelHost::repository_index() const {
  std::vector<std::string> names;
  try {
    names = list_models(impl_->options.repository);
  } catch (const Error&) {
    // A repository that cannot be listed still has the models being served.
  }
  std::map<std::string, RepositoryModel> out;
  for (const std::string& n : names) out[n] = RepositoryModel{n, "", "UNAVAILABLE", "not loaded"};
  std::lock_guard lock(impl_->mutex);
  for (const auto& [name, slot] : impl_->slots) {
    RepositoryModel r{name, "", slot.state, slot.reason};
    if (!slot.versions.empty()) r.version = slot.versions.rbegin()->second->version.version;
    out[name] = r;
  }
  std::vector<RepositoryModel> list;
  for (auto& [name, r] : out) list.push_back(std::move(r));
  return list;
}

void ModelHost::load(const std::string& name) {
  if (impl_->options.model_control != "explicit")
    throw ServeError(Failure::kBadRequest,
                     "loading models through the API needs --model-control explicit (this "
                     "server runs with --model-control " +
                         impl_->options.model_control + ")");
  if (impl_->draining.load()) throw ServeError(Failure::kUnavailable, "the server is stopping");
  std::lock_guard load_lock(impl_->load_mutex);
  ModelEntry entry;
  try {
    entry = scan_model(impl_->options.repository, name);
  } catch (const Error& e) {
    throw ServeError(e.code() == ErrorCode::kNotFound ? Failure::kNotFound : Failure::kBadRequest,
                     e.what());
  }
  try {
    impl_->load_entry(entry);
  } catch (...) {
    auto [failure, message] = classify(std::current_exception());
    // A model that does not build is the request's problem (its files), not the server's.
    throw ServeError(failure == Failure::kUnavailable ? failure : Failure::kBadRequest,
                     "failed to load model '" + name + "': " + message);
  }
  impl_->release_retired(false);
}

void ModelHost::unload(const std::string& name) {
  if (impl_->options.model_control != "explicit")
    throw ServeError(Failure::kBadRequest,
                     "unloading models through the API needs --model-control explicit (this "
                     "server runs with --model-control " +
                         impl_->options.model_control + ")");
  std::lock_guard load_lock(impl_->load_mutex);
  {
    std::lock_guard lock(impl_->mutex);
    auto it = impl_->slots.find(name);
    if (it == impl_->slots.end() || it->second.versions.empty())
      throw ServeError(Failure::kNotFound,
                       fmt::format("model '{}' is not loaded", name.substr(0, 256)));
    it->second.unloaded = true;
  }
  impl_->unload_slot(name, "unloaded");
  impl_->release_retired(false);
}

void ModelHost::poll_repository() {
  impl_->poll();
}

void ModelHost::drain() {
  impl_->draining.store(true);
  impl_->stop_maintenance();
  std::lock_guard load_lock(impl_->load_mutex);
  std::vector<std::string> names;
  {
    std::lock_guard lock(impl_->mutex);
    for (const auto& [name, slot] : impl_->slots) names.push_back(name);
  }
  for (const std::string& name : names) impl_->unload_slot(name, "the server stopped");
  impl_->release_retired(true);
}

void ModelHost::begin_drain() {
  impl_->not_ready.store(true);
}

std::string ModelHost::metrics_text() const {
  std::vector<std::shared_ptr<Served>> models;
  {
    std::lock_guard lock(impl_->mutex);
    for (const auto& [name, slot] : impl_->slots)
      for (const auto& [number, served] : slot.versions) models.push_back(served);
  }
  std::string out;
  auto each = [&](auto&& body) {
    for (const auto& m : models) body(*m);
  };
  metric_header(out, "tandem_inference_requests_total", "counter",
                "Infer requests received, per model.");
  each([&](const Served& m) {
    out += fmt::format("tandem_inference_requests_total{{{}}} {}\n", m.labels(),
                       m.metrics.requests.load());
  });
  metric_header(out, "tandem_inference_failures_total", "counter",
                "Infer requests answered with an error, per model.");
  each([&](const Served& m) {
    out += fmt::format("tandem_inference_failures_total{{{}}} {}\n", m.labels(),
                       m.metrics.failures.load());
  });
  metric_header(out, "tandem_batches_total", "counter",
                "Runs on the parallel runner (one per merged batch).");
  each([&](const Served& m) {
    out += fmt::format("tandem_batches_total{{{}}} {}\n", m.labels(), m.metrics.batches.load());
  });
  metric_header(out, "tandem_queue_duration_seconds", "histogram",
                "Per request: time from arrival to its batch's submission.");
  each([&](const Served& m) {
    m.metrics.queue_seconds.render(out, "tandem_queue_duration_seconds", m.labels());
  });
  metric_header(out, "tandem_compute_duration_seconds", "histogram",
                "Per batch: time from submission to the outputs.");
  each([&](const Served& m) {
    m.metrics.compute_seconds.render(out, "tandem_compute_duration_seconds", m.labels());
  });
  metric_header(out, "tandem_batch_size", "histogram", "Items per run on the parallel runner.");
  each([&](const Served& m) { m.metrics.batch_size.render(out, "tandem_batch_size", m.labels()); });
  metric_header(out, "tandem_model_ready", "gauge",
                "1 when the model is built and has a worker up.");
  each([&](const Served& m) {
    out += fmt::format("tandem_model_ready{{{}}} {}\n", m.labels(), m.ready() ? 1 : 0);
  });

  // The runner's view of each device, for built models.
  std::vector<std::pair<const Served*, ParallelStats>> stats;
  each([&](const Served& m) {
    if (m.built.load(std::memory_order_acquire)) stats.emplace_back(&m, m.predictor->stats());
  });
  auto device_labels = [](const Served& m, const DeviceStats& d) {
    return fmt::format("{},device=\"{}\",worker=\"{}\"", m.labels(), label_value(d.device),
                       d.worker);
  };
  metric_header(out, "tandem_device_up", "gauge", "1 while the worker's state is up.");
  for (const auto& [m, s] : stats)
    for (const DeviceStats& d : s.devices)
      out +=
          fmt::format("tandem_device_up{{{}}} {}\n", device_labels(*m, d), d.state == "up" ? 1 : 0);
  metric_header(out, "tandem_device_state", "gauge",
                "The worker's fault-policy state (1 for the current one).");
  for (const auto& [m, s] : stats)
    for (const DeviceStats& d : s.devices)
      for (const char* state : {"up", "starting", "restarting", "down"})
        out += fmt::format("tandem_device_state{{{},state=\"{}\"}} {}\n", device_labels(*m, d),
                           state, d.state == state ? 1 : 0);
  metric_header(out, "tandem_device_restarts_total", "counter",
                "Worker restarts and probes over the server's life.");
  for (const auto& [m, s] : stats)
    for (const DeviceStats& d : s.devices)
      out +=
          fmt::format("tandem_device_restarts_total{{{}}} {}\n", device_labels(*m, d), d.restarts);
  metric_header(out, "tandem_device_busy_seconds_total", "counter",
                "Time the worker spent computing shards.");
  for (const auto& [m, s] : stats)
    for (const DeviceStats& d : s.devices)
      out += fmt::format("tandem_device_busy_seconds_total{{{}}} {}\n", device_labels(*m, d),
                         d.busy_ms / 1000.0);
  metric_header(out, "tandem_device_items_total", "counter", "Batch items the worker computed.");
  for (const auto& [m, s] : stats)
    for (const DeviceStats& d : s.devices)
      out += fmt::format("tandem_device_items_total{{{}}} {}\n", device_labels(*m, d), d.items);
  metric_header(out, "tandem_shards_rerun_total", "counter",
                "Shards sent again after their worker died or hung.");
  for (const auto& [m, s] : stats)
    out += fmt::format("tandem_shards_rerun_total{{{}}} {}\n", m->labels(), s.shards_rerun);
  return out;
}

}  // namespace tandem::server

#include "server/server.h"

#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "server/batcher.h"
#include "server/kserve.h"
#include "server/metrics.h"
#include "server/repository.h"
#include "tandem/parallel.h"

namespace tandem::server {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// One served model. Everything but `built` and the metrics is written before the model is
// marked built (release) and read only after that is seen (acquire).
struct Served {
  ModelEntry entry;
  std::unique_ptr<ParallelPredictor> predictor;
  std::unique_ptr<Batcher> batcher;
  std::vector<TensorInfo> inputs, outputs;
  ModelMetrics metrics;
  std::atomic<bool> built{false};

  // Built, and at least one worker up: a model whose every device is restarting or marked down
  // cannot answer, and says so.
  bool ready() const {
    if (!built.load(std::memory_order_acquire)) return false;
    for (const DeviceStats& d : predictor->stats().devices)
      if (d.state == "up") return true;
    return false;
  }
  std::string labels() const {
    return fmt::format("model=\"{}\",version=\"{}\"", label_value(entry.name),
                       label_value(entry.version));
  }
};

// SIGTERM and SIGINT write a byte here; the main thread waits on the other end. A handler may
// only do async-signal-safe things, and a caught signal's handler is reset by exec, so the
// runner's worker processes keep the default action (a blocked mask would be inherited instead).
int g_signal_pipe[2] = {-1, -1};

// A client that hangs up before its answer is written must cost only its connection: SIGPIPE's
// default action would end the server. A no-op handler (not SIG_IGN, which exec keeps) makes the
// write fail with EPIPE here while the workers keep the default.
extern "C" void on_broken_pipe(int) {}

// Installs `handler` for `sig`; returns the previous action.
struct sigaction install_handler(int sig, void (*handler)(int)) {
  struct sigaction action = {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  struct sigaction old = {};
  ::sigaction(sig, &action, &old);
  return old;
}

extern "C" void on_stop_signal(int) {
  const char c = 1;
  ssize_t n = ::write(g_signal_pipe[1], &c, 1);
  (void)n;  // a full pipe already holds a stop request
}

json tensor_metadata(const std::vector<TensorInfo>& infos) {
  json list = json::array();
  for (const TensorInfo& info : infos) {
    json t;
    t["name"] = info.name;
    t["datatype"] = kserve_datatype(info.dtype);
    t["shape"] = info.shape;  // symbolic dims are -1 (negative), as in the protocol
    for (auto& d : t["shape"])
      if (d.get<int64_t>() < 0) d = -1;
    list.push_back(std::move(t));
  }
  return list;
}

void reply_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void reply_error(httplib::Response& res, int status, const std::string& message) {
  reply_json(res, status, error_body(message));
}

// httplib's pool, counting the connections accepted but not yet taken by a thread. httplib
// closes such a connection unanswered once stop() has been called, so a drain first waits for
// this count to reach zero (see Server::run).
class CountingPool : public httplib::TaskQueue {
 public:
  CountingPool(size_t threads, std::atomic<int64_t>& waiting) : pool_(threads), waiting_(waiting) {}
  void enqueue(std::function<void()> fn) override {
    ++waiting_;
    pool_.enqueue([this, fn = std::move(fn)] {
      --waiting_;
      fn();
    });
  }
  void shutdown() override { pool_.shutdown(); }

 private:
  httplib::ThreadPool pool_;
  std::atomic<int64_t>& waiting_;
};

class Server {
 public:
  explicit Server(const ServeOptions& options) : options_(options) {
    for (ModelEntry& e : scan_repository(options.repository)) {
      auto s = std::make_unique<Served>();
      s->entry = std::move(e);
      models_.emplace(s->entry.name, std::move(s));
    }
    // A decoded tensor can outgrow its request: "1," (2 bytes of JSON) becomes 8 bytes of INT64.
    limits_.max_tensor_bytes = options.max_request_bytes * 4;
  }

  int run();

 private:
  void add_routes(httplib::Server& http, bool api);
  Served* find_model(const httplib::Request& req, httplib::Response& res);
  void infer(const httplib::Request& req, httplib::Response& res);
  void model_metadata(const httplib::Request& req, httplib::Response& res);
  void model_ready(const httplib::Request& req, httplib::Response& res);
  std::string metrics_text() const;
  bool all_ready() const {
    if (draining_.load()) return false;
    for (const auto& [name, m] : models_)
      if (!m->ready()) return false;
    return true;
  }
  void build_model(Served& m);
  void configure(httplib::Server& http);
  int bind(httplib::Server& http, int port, const char* what);

  ServeOptions options_;
  RequestLimits limits_;
  std::map<std::string, std::unique_ptr<Served>> models_;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> waiting_connections_{0};
};

void Server::configure(httplib::Server& http) {
  const size_t threads = static_cast<size_t>(options_.http_threads);
  http.new_task_queue = [this, threads] { return new CountingPool(threads, waiting_connections_); };
  http.set_payload_max_length(options_.max_request_bytes);
  // httplib closes a keep-alive connection after 5 requests by default: a client sending many
  // would reconnect every fifth.
  http.set_keep_alive_max_count(1000);
  auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options_.request_timeout_s * 1000));
  http.set_read_timeout(timeout);
  http.set_write_timeout(timeout);
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string message = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          message = e.what();
        } catch (...) {
        }
        reply_error(res, 500, message);
      });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler's own error
    if (res.status == 404)
      reply_error(
          res, 404,
          fmt::format("no endpoint {} {}", req.method.substr(0, 16), req.path.substr(0, 256)));
    else if (res.status == 413)
      reply_error(res, 413, "request body is larger than --max-request-bytes");
  });
}

void Server::add_routes(httplib::Server& http, bool api) {
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  if (!api) return;
  http.Get("/v2/health/live",
           [](const httplib::Request&, httplib::Response& res) { res.status = 200; });
  http.Get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& res) {
    // The protocol: 200 means true, a 4xx false; no body.
    res.status = all_ready() ? 200 : 400;
  });
  http.Get("/v2", [](const httplib::Request&, httplib::Response& res) {
    json doc = {{"name", "tandem"},
                {"version", TANDEM_VERSION},
                {"extensions", json::array({"binary_tensor_data"})}};
    reply_json(res, 200, doc.dump());
  });
  const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
  http.Get(model, [this](const httplib::Request& req, httplib::Response& res) {
    model_metadata(req, res);
  });
  http.Get(model + "/ready",
           [this](const httplib::Request& req, httplib::Response& res) { model_ready(req, res); });
  http.Post(model + "/infer",
            [this](const httplib::Request& req, httplib::Response& res) { infer(req, res); });
}

Served* Server::find_model(const httplib::Request& req, httplib::Response& res) {
  const std::string name = req.matches[1].str();
  auto it = models_.find(name);
  if (it == models_.end()) {
    reply_error(res, 404, fmt::format("unknown model '{}'", name.substr(0, 256)));
    return nullptr;
  }
  Served* m = it->second.get();
  if (req.matches[2].matched && req.matches[2].str() != m->entry.version) {
    reply_error(res, 404,
                fmt::format("model '{}' has no version '{}' being served (serving version {})",
                            name, req.matches[2].str().substr(0, 64), m->entry.version));
    return nullptr;
  }
  return m;
}

void Server::model_metadata(const httplib::Request& req, httplib::Response& res) {
  Served* m = find_model(req, res);
  if (!m) return;
  if (!m->built.load(std::memory_order_acquire)) {
    reply_error(res, 503, fmt::format("model '{}' is still being built", m->entry.name));
    return;
  }
  json doc = {{"name", m->entry.name},
              {"versions", json::array({m->entry.version})},
              {"platform", "onnx"},
              {"inputs", tensor_metadata(m->inputs)},
              {"outputs", tensor_metadata(m->outputs)}};
  reply_json(res, 200, doc.dump());
}

void Server::model_ready(const httplib::Request& req, httplib::Response& res) {
  Served* m = find_model(req, res);
  if (!m) return;
  res.status = m->ready() && !draining_.load() ? 200 : 400;
}

void Server::infer(const httplib::Request& req, httplib::Response& res) {
  Served* m = find_model(req, res);
  if (!m) return;
  ++m->metrics.requests;
  auto fail = [&](int status, const std::string& message) {
    ++m->metrics.failures;
    reply_error(res, status, message);
  };
  if (!m->built.load(std::memory_order_acquire)) {
    fail(503, fmt::format("model '{}' is still being built", m->entry.name));
    return;
  }
  try {
    std::optional<uint64_t> json_length;
    if (req.has_header("Inference-Header-Content-Length"))
      json_length = parse_header_length(req.get_header_value("Inference-Header-Content-Length"));
    InferRequest request = parse_infer_request(req.body, json_length, limits_);
    std::vector<OutputRequest> wanted = resolve_outputs(m->outputs, request);
    std::vector<Tensor> inputs = match_inputs(m->inputs, std::move(request.inputs));
    Batcher::Ticket ticket = m->batcher->enqueue(std::move(inputs));
    auto timeout = std::chrono::duration<double>(options_.request_timeout_s);
    if (ticket.result.wait_for(timeout) != std::future_status::ready) {
      ticket.cancelled->store(true);
      fail(504, fmt::format("model '{}' did not answer within {} s (--request-timeout)",
                            m->entry.name, options_.request_timeout_s));
      return;
    }
    std::vector<Tensor> outputs = ticket.result.get();
    for (size_t i = 0; i < outputs.size() && i < m->outputs.size(); ++i)
      if (outputs[i].name().empty()) outputs[i].set_name(m->outputs[i].name);
    EncodedBody body =
        encode_infer_response(m->entry.name, m->entry.version, request.id, wanted, outputs);
    res.status = 200;
    if (body.json_length)
      res.set_header("Inference-Header-Content-Length", std::to_string(*body.json_length));
    res.set_content(body.body, body.content_type);
  } catch (const QueueFull& e) {
    fail(503, e.what());
  } catch (const Error& e) {
    fail(e.code() == ErrorCode::kInvalidArgument ? 400 : 500, e.what());
  } catch (const std::bad_alloc&) {
    fail(500, "out of memory");
  } catch (const std::exception& e) {
    fail(500, e.what());
  }
}

std::string Server::metrics_text() const {
  std::string out;
  auto each = [&](auto&& body) {
    for (const auto& [name, m] : models_) body(*m);
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

void Server::build_model(Served& m) {
  const ModelConfig& c = m.entry.config;
  ParallelOptions o;
  o.model_path = m.entry.model_path.string();
  o.devices = c.devices;
  o.workers_per_device = c.workers;
  o.mode = c.mode;
  o.deadline = std::chrono::milliseconds(static_cast<int64_t>(options_.deadline_s * 1000));
  try {
    m.predictor = std::make_unique<ParallelPredictor>(o);
    m.predictor->build();
    m.inputs = m.predictor->inputs();
    m.outputs = m.predictor->outputs();
    // Only dtypes the protocol can carry (no string tensors).
    for (const auto* list : {&m.inputs, &m.outputs})
      for (const TensorInfo& t : *list) (void)kserve_datatype(t.dtype);
  } catch (const Error& e) {
    raise(e.code(), "model '{}' ({}): {}", m.entry.name, o.model_path, e.what());
  }
  BatchPolicy policy;
  policy.max_batch_size = c.dynamic_batching ? c.max_batch_size : 0;
  policy.max_queue_delay = c.max_queue_delay;
  policy.preferred_batch_sizes = c.preferred_batch_sizes;
  // Without merging, each request is its own run: let the runner's queue (64) pipeline them.
  policy.max_in_flight = c.dynamic_batching ? 2 : ParallelOptions{}.queue_capacity;
  m.batcher = std::make_unique<Batcher>(*m.predictor, m.inputs, m.outputs, policy, m.metrics);
  m.built.store(true, std::memory_order_release);
  std::printf("tandem serve: model '%s' version %s ready (%zu devices, %s%s)\n",
              m.entry.name.c_str(), m.entry.version.c_str(), c.devices.size(), c.mode.c_str(),
              m.batcher->merges()
                  ? fmt::format(", dynamic batching up to {}", c.max_batch_size).c_str()
                  : "");
  std::fflush(stdout);
}

int Server::bind(httplib::Server& http, int port, const char* what) {
  int bound = port;
  if (port == 0) {
    bound = http.bind_to_any_port(options_.host);
    TANDEM_CHECK(bound > 0, ErrorCode::kRuntime, "cannot listen for {} on {} (any port)", what,
                 options_.host);
  } else {
    TANDEM_CHECK(http.bind_to_port(options_.host, port), ErrorCode::kRuntime,
                 "cannot listen for {} on {}:{} (in use, or not an address of this machine?)", what,
                 options_.host, port);
  }
  return bound;
}

// Starts `http` listening on a thread; returns once it accepts (a stop() before that would be
// lost: httplib's stop() acts only on a running server).
std::thread start_listening(httplib::Server& http) {
  std::thread t([&http] { http.listen_after_bind(); });
  for (int i = 0; i < 5000 && !http.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return t;
}

bool stop_requested(int timeout_ms) {
  pollfd p{g_signal_pipe[0], POLLIN, 0};
  int rc;
  do rc = ::poll(&p, 1, timeout_ms);
  while (rc < 0 && errno == EINTR);
  return rc > 0;
}

int Server::run() {
  httplib::Server http;
  configure(http);
  add_routes(http, true);
  const int http_port = bind(http, options_.http_port, "HTTP");
  std::unique_ptr<httplib::Server> metrics_http;
  int metrics_port = -1;
  if (options_.metrics_port >= 0) {
    metrics_http = std::make_unique<httplib::Server>();
    configure(*metrics_http);
    add_routes(*metrics_http, false);
    metrics_port = bind(*metrics_http, options_.metrics_port, "metrics");
  }

  TANDEM_CHECK(::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) == 0, ErrorCode::kRuntime,
               "pipe2: {}", std::strerror(errno));
  const struct sigaction old_term = install_handler(SIGTERM, on_stop_signal);
  const struct sigaction old_int = install_handler(SIGINT, on_stop_signal);
  const struct sigaction old_pipe = install_handler(SIGPIPE, on_broken_pipe);

  std::thread http_thread = start_listening(http);
  std::thread metrics_thread;
  if (metrics_http) metrics_thread = start_listening(*metrics_http);
  std::printf("tandem serve: listening on http://%s:%d (KServe v2; /metrics)\n",
              options_.host.c_str(), http_port);
  if (metrics_http)
    std::printf("tandem serve: metrics on http://%s:%d/metrics\n", options_.host.c_str(),
                metrics_port);
  std::fflush(stdout);

  auto shut_down = [&] {
    draining_.store(true);
    // Connections accepted but still waiting for a thread would be closed unanswered by stop():
    // let the threads take them first (bounded: a thread held by an idle keep-alive connection
    // frees within the keep-alive timeout).
    const auto give_up = Clock::now() + std::chrono::duration<double>(options_.request_timeout_s);
    while (waiting_connections_.load() > 0 && Clock::now() < give_up)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    // Stops accepting; requests already taken are answered first (listen returns once every
    // connection's handler has finished), then the models stop.
    http.stop();
    if (metrics_http) metrics_http->stop();
    if (http_thread.joinable()) http_thread.join();
    if (metrics_thread.joinable()) metrics_thread.join();
    for (auto& [name, m] : models_) {
      if (m->batcher) m->batcher->stop();
      if (m->predictor) m->predictor->finalize();
    }
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    ::close(g_signal_pipe[0]);
    ::close(g_signal_pipe[1]);
    g_signal_pipe[0] = g_signal_pipe[1] = -1;
  };

  try {
    for (auto& [name, m] : models_) {
      if (stop_requested(0)) break;
      build_model(*m);
    }
  } catch (...) {
    shut_down();
    throw;
  }
  if (!stop_requested(0)) {
    std::printf("tandem serve: ready (%zu models)\n", models_.size());
    std::fflush(stdout);
    while (!stop_requested(-1)) {
    }
  }
  std::printf("tandem serve: stopping: answering the requests in flight\n");
  std::fflush(stdout);
  shut_down();
  std::printf("tandem serve: stopped\n");
  std::fflush(stdout);
  return 0;
}

}  // namespace

int serve(const ServeOptions& options) {
  Server server(options);
  return server.run();
}

}  // namespace tandem::server

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
#include "server/grpc_frontend.h"
#include "server/kserve.h"
#include "server/model_host.h"

namespace tandem::server {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

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

// The version a request names: /versions/<v>, or empty for the highest served.
std::string requested_version(const httplib::Request& req) {
  return req.matches.size() > 2 && req.matches[2].matched ? req.matches[2].str() : "";
}

// Answers the exception being handled with its failure's HTTP status and message.
void reply_failure(httplib::Response& res) {
  auto [failure, message] = classify(std::current_exception());
  reply_error(res, http_status(failure), message);
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
  explicit Server(const ServeOptions& options) : options_(options), host_(options) {
    // A decoded tensor can outgrow its request: "1," (2 bytes of JSON) becomes 8 bytes of INT64.
    limits_.max_tensor_bytes = options.max_request_bytes * 4;
  }

  int run();

 private:
  void add_routes(httplib::Server& http, bool api);
  void infer(const httplib::Request& req, httplib::Response& res);
  void model_metadata(const httplib::Request& req, httplib::Response& res);
  void model_ready(const httplib::Request& req, httplib::Response& res);
  void repository_index(httplib::Response& res);
  void statistics(const std::string& name, const std::string& version, httplib::Response& res);
  void configure(httplib::Server& http);
  int bind(httplib::Server& http, int port, const char* what);

  ServeOptions options_;
  RequestLimits limits_;
  ModelHost host_;
  std::atomic<int64_t> waiting_connections_{0};
};

void Server::configure(httplib::Server& http) {
  const size_t threads = static_cast<size_t>(options_.http_threads);
  http.new_task_queue = [this, threads] { return new CountingPool(threads, waiting_connections_); };
  http.set_payload_max_length(options_.max_request_bytes);
  // httplib writes a response's headers and body apart: with Nagle's algorithm the body then
  // waits for the client's delayed ACK of the headers, 40 ms on Linux, on every request.
  http.set_tcp_nodelay(true);
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
    res.set_content(host_.metrics_text(), "text/plain; version=0.0.4");
  });
  if (!api) return;
  http.Get("/v2/health/live",
           [](const httplib::Request&, httplib::Response& res) { res.status = 200; });
  http.Get("/v2/health/ready", [this](const httplib::Request&, httplib::Response& res) {
    // The protocol: 200 means true, a 4xx false; no body.
    res.status = host_.ready() ? 200 : 400;
  });
  http.Get("/v2", [](const httplib::Request&, httplib::Response& res) {
    json doc = {{"name", "tandem"},
                {"version", TANDEM_VERSION},
                {"extensions", json::array({"binary_tensor_data"})}};
    reply_json(res, 200, doc.dump());
  });
  // Before the model routes, which would take "stats" for a model's name.
  http.Get("/v2/models/stats",
           [this](const httplib::Request&, httplib::Response& res) { statistics("", "", res); });
  const std::string model = R"(/v2/models/([^/]+)(?:/versions/([^/]+))?)";
  http.Get(model, [this](const httplib::Request& req, httplib::Response& res) {
    model_metadata(req, res);
  });
  http.Get(model + "/stats", [this](const httplib::Request& req, httplib::Response& res) {
    statistics(req.matches[1].str(), requested_version(req), res);
  });
  http.Get(model + "/ready",
           [this](const httplib::Request& req, httplib::Response& res) { model_ready(req, res); });
  http.Post(model + "/infer",
            [this](const httplib::Request& req, httplib::Response& res) { infer(req, res); });
  // Triton's model repository extension.
  auto index = [this](const httplib::Request&, httplib::Response& res) { repository_index(res); };
  http.Post("/v2/repository/index", index);
  http.Get("/v2/repository/index", index);
  http.Post(R"(/v2/repository/models/([^/]+)/(load|unload))",
            [this](const httplib::Request& req, httplib::Response& res) {
              try {
                if (req.matches[2].str() == "load")
                  host_.load(req.matches[1].str());
                else
                  host_.unload(req.matches[1].str());
                reply_json(res, 200, "{}");
              } catch (...) {
                reply_failure(res);
              }
            });
}

void Server::model_metadata(const httplib::Request& req, httplib::Response& res) {
  try {
    ModelInfo info = host_.info(req.matches[1].str(), requested_version(req));
    json doc = {{"name", info.name},
                {"versions", info.versions},
                {"platform", "onnx"},
                {"inputs", tensor_metadata(info.inputs)},
                {"outputs", tensor_metadata(info.outputs)}};
    reply_json(res, 200, doc.dump());
  } catch (...) {
    reply_failure(res);
  }
}

void Server::model_ready(const httplib::Request& req, httplib::Response& res) {
  try {
    // The protocol: 200 means true, a 4xx false; no body.
    res.status = host_.model_ready(req.matches[1].str(), requested_version(req)) ? 200 : 400;
  } catch (...) {
    reply_failure(res);
  }
}

void Server::infer(const httplib::Request& req, httplib::Response& res) {
  try {
    std::string id;
    std::vector<OutputRequest> wanted;
    InferResult result =
        host_.infer(req.matches[1].str(), requested_version(req), [&](const ModelInfo& info) {
          std::optional<uint64_t> json_length;
          if (req.has_header("Inference-Header-Content-Length"))
            json_length =
                parse_header_length(req.get_header_value("Inference-Header-Content-Length"));
          InferRequest request = parse_infer_request(req.body, json_length, limits_);
          wanted = resolve_outputs(info.outputs, request);
          id = std::move(request.id);
          return std::move(request.inputs);
        });
    EncodedBody body =
        encode_infer_response(req.matches[1].str(), result.version, id, wanted, result.outputs);
    res.status = 200;
    if (body.json_length)
      res.set_header("Inference-Header-Content-Length", std::to_string(*body.json_length));
    res.set_content(body.body, body.content_type);
  } catch (...) {
    reply_failure(res);
  }
}

// Triton's statistics extension (durations in nanoseconds), plus "devices": the runner's view
// of each worker, so a device marked down shows here as well as in /metrics.
void Server::statistics(const std::string& name, const std::string& version,
                        httplib::Response& res) {
  try {
    auto ns = [](double seconds) { return static_cast<uint64_t>(seconds * 1e9); };
    json list = json::array();
    for (const ModelStatistics& s : host_.statistics(name, version)) {
      json devices = json::array();
      for (const DeviceStats& d : s.devices)
        devices.push_back({{"device", d.device},
                           {"worker", d.worker},
                           {"state", d.state},
                           {"restarts", d.restarts},
                           {"items", d.items},
                           {"busy_ns", ns(d.busy_ms / 1000.0)},
                           {"last_error", d.last_error}});
      const uint64_t success = s.requests - std::min(s.requests, s.failures);
      list.push_back({{"name", s.name},
                      {"version", s.version},
                      {"ready", s.ready},
                      {"inference_count", s.batch_items},
                      {"execution_count", s.batches},
                      {"inference_stats",
                       {{"success", {{"count", success}}},
                        {"fail", {{"count", s.failures}}},
                        {"queue", {{"count", s.queued}, {"ns", ns(s.queue_seconds)}}},
                        {"compute_infer", {{"count", s.batches}, {"ns", ns(s.compute_seconds)}}}}},
                      {"shards_rerun", s.shards_rerun},
                      {"devices", devices}});
    }
    reply_json(res, 200, json{{"model_stats", list}}.dump());
  } catch (...) {
    reply_failure(res);
  }
}

void Server::repository_index(httplib::Response& res) {
  json list = json::array();
  for (const RepositoryModel& m : host_.repository_index()) {
    json entry = {{"name", m.name}, {"state", m.state}};
    if (!m.version.empty()) entry["version"] = m.version;
    if (!m.reason.empty()) entry["reason"] = m.reason;
    list.push_back(std::move(entry));
  }
  reply_json(res, 200, list.dump());
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
  // gRPC answers from here on (not ready until the models are built, as over HTTP).
  std::unique_ptr<GrpcFrontend> grpc;
  if (options_.grpc_port >= 0) grpc = std::make_unique<GrpcFrontend>(host_, options_);

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
  if (grpc)
    std::printf("tandem serve: gRPC on %s:%d (KServe v2, inference.GRPCInferenceService)\n",
                options_.host.c_str(), grpc->port());
  std::fflush(stdout);

  auto shut_down = [&] {
    host_.begin_drain();
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
    // gRPC likewise: no new calls, and those accepted answered (the host answers each within
    // --request-timeout; one still running past that and a second more is cancelled).
    if (grpc)
      grpc->shutdown(std::chrono::milliseconds(
          static_cast<int64_t>(options_.request_timeout_s * 1000) + 1000));
    if (http_thread.joinable()) http_thread.join();
    if (metrics_thread.joinable()) metrics_thread.join();
    host_.drain();
    ::sigaction(SIGTERM, &old_term, nullptr);
    ::sigaction(SIGINT, &old_int, nullptr);
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    ::close(g_signal_pipe[0]);
    ::close(g_signal_pipe[1]);
    g_signal_pipe[0] = g_signal_pipe[1] = -1;
  };

  try {
    host_.build_all([] { return stop_requested(0); });
  } catch (...) {
    shut_down();
    throw;
  }
  if (!stop_requested(0)) {
    std::printf("tandem serve: ready (%zu models)\n", host_.repository_index().size());
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

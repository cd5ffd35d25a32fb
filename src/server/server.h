// `tandem serve`: a KServe v2 (Open Inference Protocol) server over the parallel runner, on
// HTTP/REST (server.cc) and gRPC (grpc_frontend.h). The models live in a ModelHost
// (model_host.h): one ParallelPredictor per model version of the repository (repository.h), its
// requests merged by a dynamic batcher (batcher.h), Prometheus metrics on /metrics.
#pragma once

#include <cstddef>
#include <string>

namespace tandem::server {

struct ServeOptions {
  std::string repository;
  std::string host = "0.0.0.0";
  int http_port = 8000;   // 0: any free port (printed)
  int metrics_port = -1;  // -1: /metrics on the HTTP port only; 0: any free port
  int grpc_port = 8001;   // KServe v2 over gRPC; 0: any free port (printed); -1: none
  size_t max_request_bytes = size_t{64} << 20;
  double request_timeout_s = 60;  // a request not answered by then gets 504
  int http_threads = 32;
  // ParallelOptions::deadline of every model, in seconds (a shard this late marks its worker hung).
  double deadline_s = 120;
  // Triton's --model-control-mode: "none" (the repository is read once), "poll" (rescanned every
  // repository_poll_s: new, changed and removed models are loaded, reloaded and unloaded) or
  // "explicit" (POST /v2/repository/models/<name>/load and /unload).
  std::string model_control = "none";
  double repository_poll_s = 5;
};

// Runs until SIGTERM or SIGINT, then stops accepting connections, answers every request already
// accepted, stops the workers and returns 0. Throws tandem::Error for a bad repository, a port
// that cannot be bound or a model that does not build.
int serve(const ServeOptions& options);

}  // namespace tandem::server

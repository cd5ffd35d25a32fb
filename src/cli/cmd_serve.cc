// tandem serve: the KServe v2 inference server (src/server).
#include "cli/cli_common.h"
#include "server/server.h"

namespace tandem::cli {

void add_serve_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<server::ServeOptions>();
  auto max_request_bytes = std::make_shared<int64_t>(static_cast<int64_t>(opt->max_request_bytes));
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Serve a model repository over HTTP and gRPC with the KServe v2 inference protocol "
      "(Triton's clients work), with dynamic batching and Prometheus metrics.");
  cmd->footer(
      "Repository layout (Triton's): DIR/<name>/<version>/model.onnx, the highest version\n"
      "served (or as config.json's version_policy says), and an optional DIR/<name>/config.json:\n"
      "  {\"devices\": \"cpu:0,cpu:1\", \"workers\": 1, \"mode\": \"processes\",\n"
      "   \"max_batch_size\": 8,\n"
      "   \"dynamic_batching\": {\"max_queue_delay_us\": 2000, \"preferred_batch_size\": [4, 8]},\n"
      "   \"warmup\": true, \"version_policy\": {\"latest\": {\"num_versions\": 2}}}\n"
      "Endpoints: GET /v2/health/live, /v2/health/ready, /v2, /v2/models/<name>[/versions/<v>],\n"
      "/v2/models/<name>[/versions/<v>]/ready, .../stats, /v2/models/stats, /metrics; POST "
      "/v2/models/<name>[/versions/<v>]/infer\n"
      "(JSON tensors, or the binary tensor data extension); POST /v2/repository/index and\n"
      "/v2/repository/models/<name>/load|unload (--model-control explicit).\n"
      "Reloading builds the new version beside the old, which answers until it is ready.\n"
      "gRPC (--grpc-port): service inference.GRPCInferenceService of the protocol's\n"
      "grpc_predict_v2.proto (src/server/grpc_predict_v2.proto): ServerLive, ServerReady,\n"
      "ModelReady, ServerMetadata, ModelMetadata, ModelInfer (typed contents or\n"
      "raw_input_contents; outputs come in raw_output_contents). Errors: INVALID_ARGUMENT,\n"
      "NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, as HTTP's 400, 404, 503, 504, 500.\n"
      "SIGTERM or SIGINT: stop accepting (HTTP and gRPC), answer the requests in flight, exit 0.");
  cmd->add_option("--model-repository", opt->repository, "folder of models (see below)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--host", opt->host, "address to listen on (default 0.0.0.0: every interface)");
  cmd->add_option("--http-port", opt->http_port, "HTTP port (default 8000; 0: any free port)")
      ->check(int_range(0, 65535));
  cmd->add_option("--grpc-port", opt->grpc_port,
                  "gRPC port (default 8001; 0: any free port; -1: no gRPC)")
      ->check(int_range(-1, 65535));
  cmd->add_option("--metrics-port", opt->metrics_port,
                  "also serve /metrics on this port (0: any free port; default: only on the "
                  "HTTP port)")
      ->check(int_range(0, 65535));
  cmd->add_option(
         "--max-request-bytes", *max_request_bytes,
         "largest request body (HTTP: larger ones get 413) or gRPC message (larger ones get "
         "RESOURCE_EXHAUSTED) accepted (default 64 MiB)")
      ->check(int_range(1024, int64_t{1} << 40));
  cmd->add_option("--request-timeout", opt->request_timeout_s,
                  "seconds a request may wait for its answer before it gets 504 (default 60)")
      ->check(real_range(0.001, kMaxSeconds));
  cmd->add_option("--http-threads", opt->http_threads,
                  "threads serving connections; more concurrent clients wait (default 32)")
      ->check(int_range(1, 1024));
  cmd->add_option("--deadline", opt->deadline_s,
                  "seconds a shard may take before its worker counts as hung (default 120)")
      ->check(real_range(0.001, kMaxSeconds));
  cmd->add_option("--model-control", opt->model_control,
                  "none: read the repository once (default); poll: rescan it every "
                  "--repository-poll-secs and load new, reload changed, unload removed models; "
                  "explicit: load and unload through POST /v2/repository/models/<name>/load|unload")
      ->check(CLI::IsMember({"none", "poll", "explicit"}));
  cmd->add_option("--repository-poll-secs", opt->repository_poll_s,
                  "seconds between repository scans with --model-control poll (default 5)")
      ->check(real_range(0.1, kMaxSeconds));
  cmd->callback([opt, max_request_bytes, &exit_code] {
    opt->max_request_bytes = static_cast<size_t>(*max_request_bytes);
    exit_code = server::serve(*opt);
  });
}

}  // namespace tandem::cli

// `tandem serve`'s gRPC frontend: the KServe v2 service GRPCInferenceService
// (grpc_predict_v2.proto) on a grpc::Server, calling only the protocol-independent ModelHost.
// Started and stopped by the server's run loop (server.cc) beside the HTTP frontend.
#pragma once

#include <chrono>
#include <memory>

#include "server/model_host.h"
#include "server/server.h"

namespace tandem::server {

class GrpcFrontend {
 public:
  // Listens on options.host:options.grpc_port (0: any free port) and answers at once; throws
  // tandem::Error when the port cannot be bound. Messages up to options.max_request_bytes.
  GrpcFrontend(ModelHost& host, const ServeOptions& options);
  // Shuts down (as shutdown() with no grace) if that was not done.
  ~GrpcFrontend();
  GrpcFrontend(const GrpcFrontend&) = delete;
  GrpcFrontend& operator=(const GrpcFrontend&) = delete;

  // The port bound (the chosen one when options.grpc_port was 0).
  int port() const;

  // Stops accepting calls and returns once every call already accepted is answered; a call
  // still running after `grace` is cancelled (its client gets CANCELLED). Idempotent.
  void shutdown(std::chrono::milliseconds grace);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::server

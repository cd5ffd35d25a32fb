#include "server/grpc_frontend.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <climits>
#include <exception>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "server/grpc_predict_v2.grpc.pb.h"
#include "server/kserve.h"
#include "server/kserve_grpc.h"

namespace tandem::server {

namespace {

grpc::StatusCode status_code(Failure failure) {
  switch (failure) {
    case Failure::kBadRequest:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case Failure::kNotFound:
      return grpc::StatusCode::NOT_FOUND;
    case Failure::kUnavailable:
      return grpc::StatusCode::UNAVAILABLE;
    case Failure::kTimeout:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    case Failure::kInternal:
      break;
  }
  return grpc::StatusCode::INTERNAL;
}

// The exception being handled, as the call's status. The message travels in a trailer, whose
// size HTTP/2 peers limit (8 KiB by default): a long one is cut.
grpc::Status failed() {
  auto [failure, message] = classify(std::current_exception());
  if (message.size() > 2048) message = message.substr(0, 2048) + "...";
  return grpc::Status(status_code(failure), message);
}

class Service final : public inference::GRPCInferenceService::Service {
 public:
  Service(ModelHost& host, const RequestLimits& limits) : host_(host), limits_(limits) {}

  grpc::Status ServerLive(grpc::ServerContext*, const inference::ServerLiveRequest*,
                          inference::ServerLiveResponse* response) override {
    response->set_live(true);
    return grpc::Status::OK;
  }

  grpc::Status ServerReady(grpc::ServerContext*, const inference::ServerReadyRequest*,
                           inference::ServerReadyResponse* response) override {
    try {
      response->set_ready(host_.ready());
      return grpc::Status::OK;
    } catch (...) {
      return failed();
    }
  }

  grpc::Status ModelReady(grpc::ServerContext*, const inference::ModelReadyRequest* request,
                          inference::ModelReadyResponse* response) override {
    try {
      response->set_ready(host_.model_ready(request->name(), request->version()));
      return grpc::Status::OK;
    } catch (...) {
      return failed();
    }
  }

  grpc::Status ServerMetadata(grpc::ServerContext*, const inference::ServerMetadataRequest*,
                              inference::ServerMetadataResponse* response) override {
    response->set_name("tandem");
    response->set_version(TANDEM_VERSION);
    // binary_tensor_data, the one extension the HTTP frontend names, is HTTP's own: raw
    // contents are part of the gRPC protocol itself.
    return grpc::Status::OK;
  }

  grpc::Status ModelMetadata(grpc::ServerContext*, const inference::ModelMetadataRequest* request,
                             inference::ModelMetadataResponse* response) override {
    try {
      ModelInfo info = host_.info(request->name(), request->version());
      response->set_name(info.name);
      for (const std::string& v : info.versions) response->add_versions(v);
      response->set_platform("onnx");
      fill_tensor_metadata(info.inputs, *response->mutable_inputs());
      fill_tensor_metadata(info.outputs, *response->mutable_outputs());
      return grpc::Status::OK;
    } catch (...) {
      return failed();
    }
  }

  grpc::Status ModelInfer(grpc::ServerContext* context, const inference::ModelInferRequest* request,
                          inference::ModelInferResponse* response) override {
    try {
      std::vector<OutputRequest> which;
      // Decoded by the host once it knows the model, so a malformed request counts as the
      // model's failure in its metrics, as over HTTP.
      InferResult result = host_.infer(
          request->model_name(), request->model_version(),
          [&](const ModelInfo& info) {
            InferRequest decoded = parse_grpc_infer_request(*request, limits_);
            which = resolve_outputs(info.outputs, decoded);
            return std::move(decoded.inputs);
          },
          // A client that gave up (its deadline passed, or it cancelled) frees this thread and
          // its place in the queue at once.
          [context] { return context->IsCancelled(); });
      encode_grpc_infer_response(request->model_name(), result.version, request->id(), which,
                                 result.outputs, *response);
      return grpc::Status::OK;
    } catch (...) {
      return failed();
    }
  }

 private:
  ModelHost& host_;
  RequestLimits limits_;
};

// host:port as gRPC parses it: an IPv6 literal goes in brackets.
std::string listen_address(const std::string& host, int port) {
  const bool ipv6 = host.find(':') != std::string::npos && host.front() != '[';
  return ipv6 ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

}  // namespace

struct GrpcFrontend::Impl {
  Impl(ModelHost& host, const RequestLimits& limits) : service(host, limits) {}
  Service service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::once_flag stopped;
};

GrpcFrontend::GrpcFrontend(ModelHost& host, const ServeOptions& options) {
  RequestLimits limits;
  // A typed value takes at least one byte of the message (a packed varint 0) and at most 8 in
  // its tensor (INT64), so no tensor a request can carry is larger than this.
  limits.max_tensor_bytes = options.max_request_bytes * 8;
  impl_ = std::make_unique<Impl>(host, limits);

  grpc::ServerBuilder builder;
  const std::string address = listen_address(options.host, options.grpc_port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &impl_->port);
  builder.RegisterService(&impl_->service);
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<size_t>(options.max_request_bytes, INT_MAX)));
  // gRPC sets SO_REUSEPORT by default: a second server on a port in use would then bind it too
  // and share its connections instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  impl_->server = builder.BuildAndStart();
  TANDEM_CHECK(impl_->server && impl_->port > 0, ErrorCode::kRuntime,
               "cannot listen for gRPC on {} (in use, or not an address of this machine?)",
               address);
}

GrpcFrontend::~GrpcFrontend() {
  if (impl_) shutdown(std::chrono::milliseconds(0));
}

int GrpcFrontend::port() const {
  return impl_->port;
}

void GrpcFrontend::shutdown(std::chrono::milliseconds grace) {
  std::call_once(impl_->stopped, [&] {
    // Shutdown returns once the calls in flight are answered (or cancelled at the deadline).
    impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
    impl_->server->Wait();
  });
}

}  // namespace tandem::server

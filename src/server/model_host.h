// The models `tandem serve` serves, independent of the protocol that reaches them: the HTTP/REST
// frontend (server.cc) and the gRPC one (grpc_frontend.cc) both call only this. One
// ParallelPredictor and one dynamic batcher per model version; metrics; loading, unloading and
// reloading models from the repository while requests run.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "server/repository.h"
#include "server/server.h"
#include "tandem/parallel.h"
#include "tandem/tensor.h"

namespace tandem::server {

// How a request failed, for the frontend to answer in its protocol's terms.
enum class Failure {
  kBadRequest,   // HTTP 400, gRPC INVALID_ARGUMENT: malformed request, wrong tensors
  kNotFound,     // HTTP 404, gRPC NOT_FOUND: unknown model or version
  kUnavailable,  // HTTP 503, gRPC UNAVAILABLE: still building, unloading, queue full, draining
  kTimeout,      // HTTP 504, gRPC DEADLINE_EXCEEDED: no answer within --request-timeout
  kInternal,     // HTTP 500, gRPC INTERNAL
};
int http_status(Failure failure);

class ServeError : public std::runtime_error {
 public:
  ServeError(Failure failure, const std::string& message)
      : std::runtime_error(message), failure_(failure) {}
  Failure failure() const { return failure_; }

 private:
  Failure failure_;
};

// Any exception from the host or from a request's decoding, as a failure and a message:
// ServeError keeps its own; tandem::Error of kInvalidArgument is kBadRequest; bad_alloc and the
// rest are kInternal.
std::pair<Failure, std::string> classify(std::exception_ptr error);

// One served version's public face.
struct ModelInfo {
  std::string name;
  std::string version;
  std::vector<std::string> versions;  // every version being served, ascending
  std::vector<TensorInfo> inputs, outputs;
};

// The repository index entry of one model folder (GET/POST /v2/repository/index).
struct RepositoryModel {
  std::string name;
  std::string version;  // the served one; empty when none
  std::string state;    // "READY", "LOADING", "UNAVAILABLE" (unloaded or failed)
  std::string reason;   // why it is UNAVAILABLE
};

// One served version's statistics (Triton's statistics extension, plus the runner's devices).
struct ModelStatistics {
  std::string name, version;
  bool ready = false;
  uint64_t requests = 0, failures = 0, batches = 0;
  uint64_t queued = 0;         // requests that went through the queue
  double queue_seconds = 0;    // their summed time from arrival to their batch's submission
  double compute_seconds = 0;  // summed over batches
  uint64_t batch_items = 0;    // items over all batches
  int64_t shards_rerun = 0;
  std::vector<DeviceStats> devices;  // the runner's view: state, restarts, busy time, last error
};

struct InferResult {
  std::string version;          // the version that answered
  std::vector<Tensor> outputs;  // the model's outputs in model order, named
};

class ModelHost {
 public:
  // Scans the repository (throws tandem::Error naming the bad folder or file); builds nothing.
  explicit ModelHost(const ServeOptions& options);
  ~ModelHost();
  ModelHost(const ModelHost&) = delete;
  ModelHost& operator=(const ModelHost&) = delete;

  // Builds every model found by the scan, one after another; `stop` is polled between models
  // (true: return early). Throws tandem::Error for a model that does not build.
  void build_all(const std::function<bool()>& stop);

  // Server readiness: not draining, and every loaded model built with a worker up.
  bool ready() const;
  // Throws ServeError kNotFound for an unknown model or version (empty version: the highest
  // served one).
  bool model_ready(const std::string& name, const std::string& version) const;
  // Throws kNotFound, or kUnavailable while the model is still being built.
  ModelInfo info(const std::string& name, const std::string& version) const;

  // One infer request. `decode` turns the request into input tensors named as the request named
  // them (in any order); it is given the model's ModelInfo and may throw (tandem::Error
  // kInvalidArgument for a malformed request). The inputs are matched against the model's, run
  // (merged with others when the model batches dynamically) and the outputs returned. Counts the
  // request and, when anything throws, its failure in the model's metrics. Throws ServeError or
  // what `decode` threw. `cancelled`, when given, is polled while the request waits: true (the
  // client gave up) drops the request if it is still queued and throws kTimeout.
  InferResult infer(const std::string& name, const std::string& version,
                    const std::function<std::vector<Tensor>(const ModelInfo&)>& decode,
                    const std::function<bool()>& cancelled = {});

  // Every served version of `name` (empty: of every model), or just `version`. Throws kNotFound.
  std::vector<ModelStatistics> statistics(const std::string& name,
                                          const std::string& version) const;

  // Prometheus text for /metrics.
  std::string metrics_text() const;

  // The repository API (Triton's model repository extension): every model folder with its
  // state; load (or reload: a changed or new version is built beside the old one, which keeps
  // answering until the new one is ready) and unload (new requests get 404 at once; those
  // accepted are answered first).
  std::vector<RepositoryModel> repository_index() const;
  void load(const std::string& name);
  void unload(const std::string& name);
  // Rescans the repository: loads new models, reloads changed ones (a new highest version, a
  // changed model file or config.json) and unloads removed ones. Errors are printed and kept as
  // the model's reason, never thrown: a broken folder must not take down the models that work.
  void poll_repository();

  // The first step of a shutdown: readiness turns false (so load balancers move away) while
  // requests are still answered.
  void begin_drain();
  // From now on new requests get kUnavailable; then stops every batcher and predictor once
  // their accepted requests are answered.
  void drain();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::server

// ParallelPredictor: one model on several devices at once. Each device runs its own copy of the
// model — in a worker process (`tandem worker`, the default) or a thread — and every batch is
// split across them along axis 0; the gathered outputs equal a single-device run of the batch.
#pragma once

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tandem/context.h"
#include "tandem/model.h"

namespace tandem {

struct ParallelOptions {
  std::string model_path;
  // "cpu:0,cpu:1" style strings, one per device. Empty: one cpu device per core.
  std::vector<std::string> devices;
  // Optional explicit cores per device (same order as devices). Empty: the host's cores split
  // evenly over the cpu devices.
  std::vector<std::vector<int>> core_lists;
  int workers_per_device = 1;
  // Fixes input shapes in every worker, as the converter's --inputShape does. A fixed batch b
  // makes shards of exactly b items (the last one padded, its padding trimmed from the outputs).
  ShapeMap input_shapes;
  // A shard not answered within this time marks its worker hung: it is killed and restarted and
  // the shard runs elsewhere. A worker that is stopped (SIGSTOP, state 'T') is taken for hung
  // much sooner: once it has been stopped for max(1 s, 4 x its shard's expected time).
  std::chrono::milliseconds deadline{std::chrono::seconds(120)};
  // How long build() waits for every worker's BUILD_FINISH.
  std::chrono::milliseconds build_timeout{std::chrono::seconds(300)};
  // Fault policy, a rate limit rather than a lifetime count: a worker may be restarted
  // max_restarts times within restart_window (successive restarts backing off exponentially from
  // restart_backoff, at most 5 s); beyond that its device is marked down and probed again (a
  // rebuild attempt) after probe_interval, doubling after each failed probe up to
  // max_probe_interval. A probe that builds brings the device back.
  int max_restarts = 10;
  std::chrono::milliseconds restart_window{std::chrono::seconds(60)};
  std::chrono::milliseconds restart_backoff{std::chrono::milliseconds(100)};
  std::chrono::milliseconds probe_interval{std::chrono::seconds(5)};
  std::chrono::milliseconds max_probe_interval{std::chrono::seconds(300)};
  // Requests admitted but not finished; submit() beyond it fails at once (back-pressure).
  size_t queue_capacity = 64;
  // "processes" (one `tandem worker` process per worker) or "threads" (one Model per worker in
  // this process).
  std::string mode = "processes";
  // The `tandem` binary that runs workers. Empty: $TANDEM_WORKER_BINARY, then `tandem` beside
  // this executable, then the one this library was built with.
  std::string worker_binary;
  // Processes mode, given an .onnx file: the predictor converts it once (`tandem convert`'s
  // conversion, no shapes fixed, weights prepacked for one-thread shards of batch 1) into a
  // sealed memfd that every worker, restarted ones too, maps read-only, so N workers share one
  // physical copy of the weights, prepacked ones included, and none parses or optimises the
  // model again. A worker's command line names the memfd (/proc/<pid>/fd/<n>) and, after
  // --source, the .onnx. Should the conversion fail, the workers build from the .onnx and report
  // why. false: every worker loads the file itself.
  bool convert_once = true;
  // A .tandem model's checksum is checked once, here, and the workers skip it (Context::
  // verify_checksum). false: not checked at all (a file trusted not to be damaged: the workers
  // then read only the pages their kernels use, and are ready sooner).
  bool verify_checksum = true;
  // Print the seed's progress lines ("Success to build model i", "Receive exit message").
  bool verbose = false;
  // Size caps every worker builds its model with (Context::max_tensor_bytes / max_model_bytes).
  size_t max_tensor_bytes = Context{}.max_tensor_bytes;
  size_t max_model_bytes = Context{}.max_model_bytes;
};

// Parses "cpu:0,cpu:1", or a count "2" (meaning cpu:0,cpu:1). Throws on anything else.
std::vector<std::string> parse_device_list(const std::string& text);

struct DeviceStats {
  std::string device;
  int worker = 0;
  int pid = -1;                // worker process id (processes mode), -1 when not running
  bool up = true;              // false while the device is marked down (until a probe rebuilds)
  std::string state = "up";    // "up", "starting", "restarting" (backing off), "down"
  int restarts = 0;            // restarts (counted once scheduled) and probes over its life
  int restarts_in_window = 0;  // restarts within the last restart_window (the rate limit's count)
  double next_start_s = -1;    // seconds until the next restart or probe; -1 when none is due
  int64_t items = 0;           // batch items computed
  double busy_ms = 0;          // time spent computing shards (as the worker measured it)
  double items_per_s = 0;      // moving average the splitter uses
  std::string last_error;
};

struct ParallelStats {
  int64_t requests = 0;
  int64_t failed_requests = 0;
  int64_t shards_rerun = 0;       // shards re-sent after a worker died or hung
  double overhead_ms_last = 0;    // last request: wall time minus its slowest shard's compute
  double overhead_ms_total = 0;   // the same, summed over all completed requests
  int64_t supervisor_errors = 0;  // unexpected failures the supervisor caught and went on from
  std::string last_supervisor_error;
  std::vector<DeviceStats> devices;
};

class ParallelPredictor {
 public:
  explicit ParallelPredictor(ParallelOptions options);
  ~ParallelPredictor();  // finalize()
  ParallelPredictor(const ParallelPredictor&) = delete;
  ParallelPredictor& operator=(const ParallelPredictor&) = delete;

  // Starts and builds every worker in parallel; returns when all answered BUILD_FINISH. On any
  // failure throws an Error carrying each failing device's own message and leaves no process.
  // Once built, a second build() does nothing (so `with ParallelPredictor(...) as p: p.build()`
  // works); after finalize() it throws.
  void build();
  // Model inputs/outputs as the workers report them (after build()).
  std::vector<TensorInfo> inputs() const;
  std::vector<TensorInfo> outputs() const;

  // Blocking predict. Inputs by name (all named) or by position.
  std::vector<Tensor> predict(const std::vector<Tensor>& inputs);
  // Non-blocking: the inputs are copied before it returns; the future carries the outputs or a
  // tandem::Error naming device, request and cause. Fails at once when the queue is full.
  std::future<std::vector<Tensor>> submit(const std::vector<Tensor>& inputs);
  // Waits for requests in flight, sends EXIT, reaps every worker. Idempotent.
  void finalize();

  ParallelStats stats() const;

  class Engine;  // processes or threads

 private:
  std::unique_ptr<Engine> engine_;
};

}  // namespace tandem

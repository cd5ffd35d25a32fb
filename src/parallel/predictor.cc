#include "core/error.h"
#include "parallel/engine.h"

namespace tandem {

ParallelPredictor::ParallelPredictor(ParallelOptions options) {
  TANDEM_CHECK(options.mode == "processes" || options.mode == "threads",
               ErrorCode::kInvalidArgument, "mode '{}' is unknown: use 'processes' or 'threads'",
               options.mode);
  TANDEM_CHECK(options.deadline.count() > 0 && options.build_timeout.count() > 0,
               ErrorCode::kInvalidArgument, "deadline and build_timeout must be positive");
  TANDEM_CHECK(options.queue_capacity >= 1, ErrorCode::kInvalidArgument,
               "queue_capacity must be >= 1");
  TANDEM_CHECK(options.max_restarts >= 0, ErrorCode::kInvalidArgument,
               "max_restarts must be >= 0");
  TANDEM_CHECK(options.restart_window.count() > 0 && options.restart_backoff.count() >= 0 &&
                   options.probe_interval.count() > 0 &&
                   options.max_probe_interval >= options.probe_interval,
               ErrorCode::kInvalidArgument,
               "restart_window and probe_interval must be positive, restart_backoff not negative, "
               "max_probe_interval at least probe_interval");
  engine_ = options.mode == "threads" ? parallel::make_thread_engine(std::move(options))
                                      : parallel::make_process_engine(std::move(options));
}

ParallelPredictor::~ParallelPredictor() {
  try {
    finalize();
  } catch (...) {
  }
}

void ParallelPredictor::build() { engine_->build(); }
std::vector<TensorInfo> ParallelPredictor::inputs() const { return engine_->inputs(); }
std::vector<TensorInfo> ParallelPredictor::outputs() const { return engine_->outputs(); }

std::vector<Tensor> ParallelPredictor::predict(const std::vector<Tensor>& inputs) {
  return engine_->submit(inputs).get();
}

std::future<std::vector<Tensor>> ParallelPredictor::submit(const std::vector<Tensor>& inputs) {
  return engine_->submit(inputs);
}

void ParallelPredictor::finalize() { engine_->finalize(); }
ParallelStats ParallelPredictor::stats() const { return engine_->stats(); }

}  // namespace tandem

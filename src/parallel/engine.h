// The two ways ParallelPredictor runs its workers. Both split and gather the same way
// (parallel/batch.h); they differ in where a shard runs.
#pragma once

#include <future>
#include <memory>

#include "tandem/parallel.h"

namespace tandem {

class ParallelPredictor::Engine {
 public:
  virtual ~Engine() = default;
  virtual void build() = 0;
  virtual std::future<std::vector<Tensor>> submit(const std::vector<Tensor>& inputs) = 0;
  virtual void finalize() = 0;
  virtual ParallelStats stats() const = 0;
  virtual std::vector<TensorInfo> inputs() const = 0;
  virtual std::vector<TensorInfo> outputs() const = 0;
};

namespace parallel {
std::unique_ptr<ParallelPredictor::Engine> make_process_engine(ParallelOptions options);
std::unique_ptr<ParallelPredictor::Engine> make_thread_engine(ParallelOptions options);
}  // namespace parallel

}  // namespace tandem

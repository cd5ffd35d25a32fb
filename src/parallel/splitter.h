// How a batch is cut into shards: along axis 0, in proportion to each worker's measured speed.
#pragma once

#include <cstdint>
#include <vector>

namespace tandem::parallel {

struct ShardPlan {
  int worker = 0;     // index into the workers passed in
  int64_t begin = 0;  // first item (into the padded batch when the model's batch is fixed)
  int64_t count = 0;  // items
};

// Splits `batch` items over workers with throughputs `speeds` (items/s, > 0; workers with speed
// <= 0 are skipped). Dynamic batch (fixed_batch == 0): at most one shard per worker, sizes
// proportional to speed (largest remainder), every shard >= 1 item, contiguous in worker order;
// a batch smaller than the worker count uses the fastest workers. Fixed batch b: ceil(batch/b)
// shards of exactly b items, each given to the worker expected to finish it first.
std::vector<ShardPlan> split_batch(int64_t batch, const std::vector<double>& speeds,
                                   int64_t fixed_batch = 0);

}  // namespace tandem::parallel

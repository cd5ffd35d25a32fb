// Which inputs and outputs carry the batch, and where every shard's tensors live in the shared
// buffers. Used by both engines (processes and threads).
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/protocol.h"
#include "parallel/splitter.h"
#include "tandem/tensor.h"

namespace tandem::parallel {

struct BatchedInputs {
  std::vector<const Tensor*> ordered;  // the caller's tensors in model input order
  std::vector<bool> batched;           // split along axis 0, or sent whole to every worker
  int64_t batch = 1;                   // items in the request
  int64_t fixed_batch = 0;             // > 0: the model takes exactly this many items
};

// Matches the caller's tensors to the model's inputs (by name when all are named, else by
// position) and checks dtype and shape, so bad input is refused before any worker sees it.
// An input is batched when the model's dim 0 is symbolic, or fixed at b while the caller's
// dim 0 differs from b (then shards are b items each).
BatchedInputs analyse_inputs(const std::vector<TensorInfo>& declared,
                             const std::vector<Tensor>& inputs);

// An output carries the batch when its declared dim 0 is symbolic (or equals the fixed batch).
std::vector<bool> batched_outputs(const std::vector<TensorInfo>& declared, int64_t fixed_batch);

// Byte layout of one request in its input and output buffers.
struct RequestLayout {
  int64_t padded_batch = 0;            // batch rounded up to whole fixed-size shards
  std::vector<uint64_t> input_offset;  // per input: start in the input buffer
  size_t input_bytes = 0;
  // Per shard, the descriptors sent to the worker.
  std::vector<std::vector<TensorDesc>> shard_inputs;
  std::vector<std::vector<TensorDesc>> shard_outputs;
  // Per output: where the gathered tensor starts and its shape (trimmed to the real batch).
  std::vector<uint64_t> output_offset;
  std::vector<Shape> output_shape;
  std::vector<DataType> output_dtype;
  size_t output_bytes = 0;
};

// Input side: offsets of every input (batched ones padded to padded_batch) and each shard's
// input descriptors.
RequestLayout layout_inputs(const BatchedInputs& in, const std::vector<ShardPlan>& shards);
// Output side, once every shard's output shapes are known (shard_shapes[s][o]).
void layout_outputs(RequestLayout& layout, const BatchedInputs& in,
                    const std::vector<ShardPlan>& shards, const std::vector<bool>& out_batched,
                    const std::vector<std::vector<TensorDesc>>& shard_shapes,
                    const std::vector<std::string>& output_names);
// One shard's output as a worker produced it: a dtype, a shape and the bytes (exactly
// tensor_bytes(dtype, shape) of them, which the caller has checked are readable).
struct ShardOutput {
  DataType dtype = DataType::kUndefined;
  Shape shape;
  const uint8_t* data = nullptr;
};

// The one gather both engines use for outputs whose shapes were not planned in advance (every
// threads-mode request; process-mode outputs that depend on input values). per_shard[s][o] is
// shard s's output o. A batched output whose shards each give their own item count along axis 0
// is placed at the shard's rows (a fixed-batch tail's padding trimmed); one whose dim 0 varies
// otherwise is concatenated, if the batch has no padding. Everything is checked first: each
// shard has every output, dtypes match the model's, ranks and trailing dims agree, sizes
// computed without overflow. Throws tandem::Error naming the output otherwise.
std::vector<Tensor> gather_outputs(const std::vector<TensorInfo>& declared,
                                   const std::vector<bool>& out_batched,
                                   const std::vector<ShardPlan>& shards, int64_t batch,
                                   const std::vector<std::vector<ShardOutput>>& per_shard);

// Copies the caller's inputs into the input buffer (a fixed-batch tail repeats the last item).
void write_inputs(const BatchedInputs& in, const RequestLayout& layout, uint8_t* buffer);

}  // namespace tandem::parallel

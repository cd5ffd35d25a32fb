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
  int64_t padded_batch = 0;         // batch rounded up to whole fixed-size shards
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
// Copies the caller's inputs into the input buffer (a fixed-batch tail repeats the last item).
void write_inputs(const BatchedInputs& in, const RequestLayout& layout, uint8_t* buffer);

}  // namespace tandem::parallel

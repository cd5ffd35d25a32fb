#include "parallel/batch.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "runtime/input_check.h"

namespace tandem::parallel {

namespace {
size_t align64(size_t n) {
  return (n + 63) / 64 * 64;
}
size_t row_bytes(DataType dtype, const Shape& shape) {
  Shape rest(shape.begin() + 1, shape.end());
  return static_cast<size_t>(shape_numel(rest)) * dtype_size(dtype);
}
}  // namespace

BatchedInputs analyse_inputs(const std::vector<TensorInfo>& declared,
                             const std::vector<Tensor>& inputs) {
  BatchedInputs out;
  out.ordered = match_inputs(declared, inputs);
  out.batched.assign(declared.size(), false);
  int64_t batch = -1;
  std::string batch_from;
  for (size_t i = 0; i < declared.size(); ++i) {
    const TensorInfo& d = declared[i];
    const Tensor& t = *out.ordered[i];
    // Axis 0 may differ from a fixed declaration: that is how a fixed-batch model is split.
    check_input(d, !d.shape.empty(), t, /*first_dim=*/1);
    if (d.shape.empty() || t.rank() == 0) continue;
    bool symbolic = d.shape[0] < 0;
    if (!symbolic && t.dim(0) == d.shape[0]) continue;  // whole, as declared
    out.batched[i] = true;
    if (!symbolic) {
      TANDEM_CHECK(out.fixed_batch == 0 || out.fixed_batch == d.shape[0],
                   ErrorCode::kInvalidArgument,
                   "input '{}' fixes the batch at {}, another input at {}", d.name, d.shape[0],
                   out.fixed_batch);
      out.fixed_batch = d.shape[0];
    }
    if (batch < 0) {
      batch = t.dim(0);
      batch_from = d.name;
    }
    TANDEM_CHECK(t.dim(0) == batch, ErrorCode::kInvalidArgument,
                 "inputs disagree on the batch: '{}' has {} items, '{}' has {}", batch_from, batch,
                 d.name, t.dim(0));
  }
  // A fixed-batch model with symbolic-batch inputs as well: every batched input must then be
  // split in the same shards of fixed_batch items.
  out.batch = batch < 0 ? 1 : batch;
  if (batch < 0) std::fill(out.batched.begin(), out.batched.end(), false);
  return out;
}

std::vector<bool> batched_outputs(const std::vector<TensorInfo>& declared, int64_t fixed_batch) {
  std::vector<bool> b;
  for (const TensorInfo& d : declared)
    b.push_back(!d.shape.empty() &&
                (d.shape[0] < 0 || (fixed_batch > 0 && d.shape[0] == fixed_batch)));
  return b;
}

RequestLayout layout_inputs(const BatchedInputs& in, const std::vector<ShardPlan>& shards) {
  RequestLayout l;
  l.padded_batch = in.batch;
  for (const ShardPlan& s : shards) l.padded_batch = std::max(l.padded_batch, s.begin + s.count);
  size_t off = 0;
  for (size_t i = 0; i < in.ordered.size(); ++i) {
    const Tensor& t = *in.ordered[i];
    l.input_offset.push_back(off);
    size_t bytes = in.batched[i] ? row_bytes(t.dtype(), t.shape()) * l.padded_batch : t.nbytes();
    off += align64(bytes);
  }
  l.input_bytes = std::max<size_t>(off, 64);
  for (const ShardPlan& s : shards) {
    std::vector<TensorDesc> descs;
    for (size_t i = 0; i < in.ordered.size(); ++i) {
      const Tensor& t = *in.ordered[i];
      TensorDesc d{t.dtype(), t.shape(), l.input_offset[i]};
      if (in.batched[i]) {
        d.shape[0] = s.count;
        d.offset += row_bytes(t.dtype(), t.shape()) * s.begin;
      }
      descs.push_back(d);
    }
    l.shard_inputs.push_back(std::move(descs));
  }
  return l;
}

void layout_outputs(RequestLayout& l, const BatchedInputs& in, const std::vector<ShardPlan>& shards,
                    const std::vector<bool>& out_batched,
                    const std::vector<std::vector<TensorDesc>>& shard_shapes,
                    const std::vector<std::string>& output_names) {
  const size_t n_out = out_batched.size();
  l.shard_outputs.assign(shards.size(), std::vector<TensorDesc>(n_out));
  l.output_offset.clear();
  l.output_shape.clear();
  l.output_dtype.clear();
  size_t off = 0;
  for (size_t o = 0; o < n_out; ++o) {
    const TensorDesc& first = shard_shapes[0][o];
    l.output_offset.push_back(off);
    l.output_dtype.push_back(first.dtype);
    bool batched = out_batched[o] && !first.shape.empty();
    if (batched) {
      Shape rest(first.shape.begin() + 1, first.shape.end());
      size_t row = static_cast<size_t>(shape_numel(rest)) * dtype_size(first.dtype);
      for (size_t s = 0; s < shards.size(); ++s) {
        const TensorDesc& d = shard_shapes[s][o];
        TANDEM_CHECK(d.dtype == first.dtype && d.shape.size() == first.shape.size() &&
                         d.shape[0] == shards[s].count &&
                         std::equal(d.shape.begin() + 1, d.shape.end(), first.shape.begin() + 1),
                     ErrorCode::kUnsupported,
                     "output '{}' does not follow the batch: a shard of {} items gives shape "
                     "{}, another {}; it cannot be gathered along axis 0",
                     output_names[o], shards[s].count, shape_str(d.shape), shape_str(first.shape));
        l.shard_outputs[s][o] = {d.dtype, d.shape, off + row * shards[s].begin};
      }
      Shape total = first.shape;
      total[0] = in.batch;  // padding rows of a fixed-batch tail are trimmed
      l.output_shape.push_back(total);
      off += align64(row * l.padded_batch);
    } else {
      // Not batched: every shard writes its own copy; the caller gets shard 0's.
      for (size_t s = 0; s < shards.size(); ++s) {
        const TensorDesc& d = shard_shapes[s][o];
        l.shard_outputs[s][o] = {d.dtype, d.shape, off};
        off += align64(static_cast<size_t>(shape_numel(d.shape)) * dtype_size(d.dtype));
      }
      l.output_shape.push_back(first.shape);
    }
  }
  l.output_bytes = std::max<size_t>(off, 64);
}

std::vector<Tensor> gather_outputs(const std::vector<TensorInfo>& declared,
                                   const std::vector<bool>& out_batched,
                                   const std::vector<ShardPlan>& shards, int64_t batch,
                                   const std::vector<std::vector<ShardOutput>>& per_shard) {
  TANDEM_CHECK(!shards.empty() && per_shard.size() == shards.size(), ErrorCode::kInternal,
               "{} shards but {} shard results", shards.size(), per_shard.size());
  for (size_t s = 0; s < per_shard.size(); ++s)
    TANDEM_CHECK(per_shard[s].size() == declared.size(), ErrorCode::kRuntime,
                 "shard {} returned {} outputs, the model has {}", s, per_shard[s].size(),
                 declared.size());
  int64_t padded = 0;
  for (const ShardPlan& p : shards) padded = std::max(padded, p.begin + p.count);
  std::vector<Tensor> outs;
  for (size_t o = 0; o < declared.size(); ++o) {
    const std::string& name = declared[o].name;
    const ShardOutput& first = per_shard[0][o];
    bool rows_follow_shards = true, trailing_agree = true;
    for (size_t s = 0; s < shards.size(); ++s) {
      const ShardOutput& d = per_shard[s][o];
      TANDEM_CHECK(d.dtype == first.dtype &&
                       (declared[o].dtype == DataType::kUndefined || d.dtype == declared[o].dtype),
                   ErrorCode::kRuntime,
                   "output '{}': shard {} gave dtype {}, the model declares {}", name, s,
                   dtype_name(d.dtype), dtype_name(declared[o].dtype));
      TANDEM_CHECK(d.shape.size() == first.shape.size(), ErrorCode::kUnsupported,
                   "output '{}' cannot be gathered: shards gave ranks {} and {}", name,
                   first.shape.size(), d.shape.size());
      tensor_bytes(d.dtype, d.shape);  // checked size, throws beyond the limit
      if (d.shape.empty()) continue;
      rows_follow_shards = rows_follow_shards && d.shape[0] == shards[s].count;
      trailing_agree =
          trailing_agree && std::equal(d.shape.begin() + 1, d.shape.end(), first.shape.begin() + 1);
    }
    if (!out_batched[o] || first.shape.empty()) {
      // Not batched: every shard computed the same; the caller gets shard 0's.
      outs.push_back(Tensor::copy_of(first.dtype, first.shape, first.data, name));
      continue;
    }
    TANDEM_CHECK(trailing_agree && (rows_follow_shards || padded == batch), ErrorCode::kUnsupported,
                 "output '{}' cannot be gathered along axis 0: shards gave {} and {}", name,
                 shape_str(first.shape), shape_str(per_shard.back()[o].shape));
    const uint64_t row =
        tensor_bytes(first.dtype, Shape(first.shape.begin() + 1, first.shape.end()));
    Shape total = first.shape;
    if (rows_follow_shards) {
      total[0] = batch;  // padding rows of a fixed-batch tail are trimmed
    } else {
      total[0] = 0;
      for (const auto& shard : per_shard) total[0] += shard[o].shape[0];
    }
    tensor_bytes(first.dtype, total);
    Tensor t(first.dtype, total, name);
    uint8_t* dst = t.data<uint8_t>();
    int64_t at = 0;
    for (size_t s = 0; s < shards.size(); ++s) {
      const ShardOutput& d = per_shard[s][o];
      int64_t begin = rows_follow_shards ? shards[s].begin : at;
      int64_t rows = rows_follow_shards ? std::min(d.shape[0], batch - begin) : d.shape[0];
      if (rows > 0)
        std::memcpy(dst + row * static_cast<uint64_t>(begin), d.data,
                    row * static_cast<uint64_t>(rows));
      at += d.shape[0];
    }
    outs.push_back(std::move(t));
  }
  return outs;
}

void write_inputs(const BatchedInputs& in, const RequestLayout& l, uint8_t* buffer) {
  for (size_t i = 0; i < in.ordered.size(); ++i) {
    const Tensor& t = *in.ordered[i];
    uint8_t* dst = buffer + l.input_offset[i];
    std::memcpy(dst, t.raw(), t.nbytes());
    // A fixed-batch tail is padded with copies of the last item: valid input for any model
    // (zeros might not be), and trimmed from the outputs.
    if (in.batched[i] && l.padded_batch > in.batch) {
      size_t row = row_bytes(t.dtype(), t.shape());
      for (int64_t r = in.batch; r < l.padded_batch; ++r)
        std::memcpy(dst + row * r, dst + row * (in.batch - 1), row);
    }
  }
}

}  // namespace tandem::parallel

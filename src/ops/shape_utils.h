// Shape arithmetic shared by schemas and kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "ir/ir.h"

namespace tandem {

// numpy-style broadcast of two or more shapes; throws an error naming `node` when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b, const Node& node);
Shape broadcast_shapes(const std::vector<Shape>& shapes, const Node& node);

// ceil(v / d) for v >= 0 and d >= 1, without forming v + d - 1 (which wraps when v, a size
// from the model, is near 2^63).
inline int64_t ceil_div(int64_t v, int64_t d) {
  return v / d + (v % d != 0 ? 1 : 0);
}

// Maps a possibly negative axis into [0, rank); throws naming `node` when out of range.
int64_t normalize_axis(int64_t axis, int64_t rank, const Node& node);

// `s` permuted by `perm` as Transpose would (empty: unchanged); throws naming `node` and the
// attribute `name` when perm is not a permutation of s's axes.
Shape permuted(const Shape& s, const std::vector<int64_t>& perm, const Node& node,
               const char* name);

// Row-major strides of `shape` (in elements).
std::vector<int64_t> contiguous_strides(const Shape& shape);

// Strides to read a tensor of shape `in` as if broadcast to `out` (0 where broadcast).
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out);

// Reads an integer tensor (int32 or int64) as int64 values.
std::vector<int64_t> tensor_to_int64s(const Tensor& t, const Node& node);

// Reads a numeric scalar-or-1-element tensor as double.
double tensor_scalar_as_double(const Tensor& t, const Node& node);

// Whether element i of t is non-zero (-0.0 counts as zero).
bool element_nonzero(const Tensor& t, int64_t i);

// Advances the row-major multi-index `pos` over `shape` by one element (the last axis fastest);
// past the last element it wraps to all zeros.
void next_position(std::vector<int64_t>& pos, const Shape& shape);

}  // namespace tandem

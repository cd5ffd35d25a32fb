#include "ops/shape_utils.h"

#include <algorithm>

#include "core/dtype_visit.h"
#include "core/error.h"

namespace tandem {

Shape broadcast_shapes(const Shape& a, const Shape& b, const Node& node) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da == db || db == 1) {
      out[i] = da;
    } else if (da == 1) {
      out[i] = db;
    } else {
      raise(ErrorCode::kInvalidArgument, "{}: shapes {} and {} cannot be broadcast together",
            node.describe(), shape_str(a), shape_str(b));
    }
  }
  return out;
}

Shape broadcast_shapes(const std::vector<Shape>& shapes, const Node& node) {
  Shape out;
  for (const Shape& s : shapes) out = broadcast_shapes(out, s, node);
  return out;
}

int64_t normalize_axis(int64_t axis, int64_t rank, const Node& node) {
  TANDEM_CHECK(axis >= -rank && axis < rank, ErrorCode::kInvalidModel,
               "{}: axis {} is out of range for rank {}", node.describe(), axis, rank);
  return axis < 0 ? axis + rank : axis;
}

std::vector<int64_t> contiguous_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  std::vector<int64_t> in_strides = contiguous_strides(in);
  size_t offset = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) strides[offset + i] = in[i] == 1 ? 0 : in_strides[i];
  return strides;
}

std::vector<int64_t> tensor_to_int64s(const Tensor& t, const Node& node) {
  std::vector<int64_t> v(static_cast<size_t>(t.numel()));
  if (t.dtype() == DataType::kInt64) {
    std::copy(t.data<int64_t>(), t.data<int64_t>() + t.numel(), v.begin());
  } else if (t.dtype() == DataType::kInt32) {
    std::copy(t.data<int32_t>(), t.data<int32_t>() + t.numel(), v.begin());
  } else {
    raise(ErrorCode::kInvalidModel, "{}: expected an int32/int64 tensor, got {}", node.describe(),
          dtype_name(t.dtype()));
  }
  return v;
}

double tensor_scalar_as_double(const Tensor& t, const Node& node) {
  TANDEM_CHECK(t.numel() == 1, ErrorCode::kInvalidModel,
               "{}: expected a single value, got shape {}", node.describe(), shape_str(t.shape()));
  double v = 0;
  const bool native =
      visit_dtype(t.dtype(), [&](auto tag) { v = static_cast<double>(*t.data<decltype(tag)>()); });
  TANDEM_CHECK(native, ErrorCode::kUnsupported, "{}: cannot read a {} scalar", node.describe(),
               dtype_name(t.dtype()));
  return v;
}

// Whether element i of t is non-zero (-0.0 counts as zero).
bool element_nonzero(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DataType::kFloat32:
      return t.data<float>()[i] != 0;
    case DataType::kFloat64:
      return t.data<double>()[i] != 0;
    case DataType::kFloat16:
    case DataType::kBFloat16:
      return (t.data<uint16_t>()[i] & 0x7fff) != 0;
    default: {
      size_t es = dtype_size(t.dtype());
      const uint8_t* p = static_cast<const uint8_t*>(t.raw()) + i * static_cast<int64_t>(es);
      for (size_t b = 0; b < es; ++b)
        if (p[b]) return true;
      return false;
    }
  }
}

void next_position(std::vector<int64_t>& pos, const Shape& shape) {
  for (size_t d = pos.size(); d-- > 0;) {
    if (++pos[d] < shape[d]) return;
    pos[d] = 0;
  }
}

Shape permuted(const Shape& s, const std::vector<int64_t>& perm, const Node& node,
               const char* name) {
  if (perm.empty()) return s;
  const int64_t rank = static_cast<int64_t>(s.size());
  TANDEM_CHECK(static_cast<int64_t>(perm.size()) == rank, ErrorCode::kInvalidArgument,
               "{}: {} {} does not match an operand of rank {}", node.describe(), name,
               fmt::format("{}", perm), rank);
  std::vector<bool> seen(s.size(), false);
  Shape out;
  for (int64_t p : perm) {
    TANDEM_CHECK(p >= 0 && p < rank && !seen[static_cast<size_t>(p)], ErrorCode::kInvalidModel,
                 "{}: {} {} is not a permutation of 0..{}", node.describe(), name,
                 fmt::format("{}", perm), rank - 1);
    seen[static_cast<size_t>(p)] = true;
    out.push_back(s[static_cast<size_t>(p)]);
  }
  return out;
}

}  // namespace tandem

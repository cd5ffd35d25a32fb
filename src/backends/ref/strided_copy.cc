#include "backends/ref/strided_copy.h"

#include <cstring>

#include "core/dtype_visit.h"

namespace tandem {

void strided_copy(const KernelContext& ctx, uint8_t* dst, const uint8_t* src, const Shape& shape,
                  const std::vector<int64_t>& strides, int64_t esize) {
  Shape s;
  std::vector<int64_t> st;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) return;
    if (shape[i] == 1) continue;
    if (!s.empty() && st.back() == strides[i] * shape[i]) {
      s.back() *= shape[i];
      st.back() = strides[i];
    } else {
      s.push_back(shape[i]);
      st.push_back(strides[i]);
    }
  }
  if (s.empty()) {
    std::memcpy(dst, src, static_cast<size_t>(esize));
    return;
  }
  const int64_t inner = s.back(), inner_stride = st.back();
  const int64_t rows = shape_numel(s) / inner;
  ctx.pool.parallel_for(
      rows,
      [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          int64_t off = 0;
          for (int64_t rem = row, d = static_cast<int64_t>(s.size()) - 2; d >= 0; --d) {
            off += (rem % s[d]) * st[d];
            rem /= s[d];
          }
          const uint8_t* from = src + off * esize;
          uint8_t* to = dst + row * inner * esize;
          if (inner_stride == 1) {
            std::memcpy(to, from, static_cast<size_t>(inner * esize));
            continue;
          }
          auto copy_as = [&](auto tag) {
            using E = decltype(tag);
            const E* f = reinterpret_cast<const E*>(from);
            E* t = reinterpret_cast<E*>(to);
            for (int64_t i = 0; i < inner; ++i) t[i] = f[i * inner_stride];
          };
          if (!visit_element_bits(static_cast<size_t>(esize), copy_as))
            for (int64_t i = 0; i < inner; ++i)
              std::memcpy(to + i * esize, from + i * inner_stride * esize,
                          static_cast<size_t>(esize));
        }
      },
      inner);
}

}  // namespace tandem

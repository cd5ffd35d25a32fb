// The CPU backend's Transpose for the layouts models switch between (NCHW <-> NHWC around
// attention blocks, head splitting): the permutation is first simplified (size-1 dims dropped,
// input dims that stay neighbours merged), then
//   - the innermost dim stays innermost: rows are copied whole (memcpy);
//   - the two innermost dims swap (a batch of 2-D transposes): copied by 32 x 32 tiles, so
//     both the reads and the writes stay within a few cache lines, 4-byte elements by 4 x 4
//     register blocks (16-byte reads and writes on both sides);
//   - anything else: the reference kernel's strided copy.
// Any element size of 1, 2, 4 or 8 bytes; tiles or rows are spread over the threads.
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_util.h"
#include "ops/shape_utils.h"

namespace tandem::cpu {

namespace {

// The permutation reduced: dims[i] are the sizes of the merged input dims, perm the order in
// which the output takes them.
struct Reduced {
  std::vector<int64_t> dims, perm;
};

Reduced reduce(const Shape& in, const std::vector<int64_t>& perm) {
  // Keep input dims of size > 1, in output order.
  std::vector<int64_t> order;
  for (int64_t p : perm)
    if (in[static_cast<size_t>(p)] != 1) order.push_back(p);
  // Merge runs p, p+1, ... that are consecutive in the output too.
  std::vector<std::vector<int64_t>> groups;
  for (int64_t p : order) {
    if (!groups.empty() && groups.back().back() + 1 == p)
      groups.back().push_back(p);
    else
      groups.push_back({p});
  }
  // Number the groups by their position in the input.
  std::vector<size_t> by_input(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) by_input[i] = i;
  std::sort(by_input.begin(), by_input.end(),
            [&](size_t a, size_t b) { return groups[a][0] < groups[b][0]; });
  Reduced r;
  r.perm.assign(groups.size(), 0);
  for (size_t rank_in = 0; rank_in < by_input.size(); ++rank_in) {
    const auto& g = groups[by_input[rank_in]];
    int64_t size = 1;
    for (int64_t p : g) size *= in[static_cast<size_t>(p)];
    r.dims.push_back(size);
    r.perm[by_input[rank_in]] = static_cast<int64_t>(rank_in);
  }
  return r;
}

typedef uint32_t u32x4 __attribute__((vector_size(16)));

// dst[c][r] = src[r][c] for a 4 x 4 block of 4-byte elements (source rows `ls` apart, destination
// rows `ld` apart), through registers: four 16-byte loads, eight shuffles, four 16-byte stores.
inline void transpose_4x4(const uint32_t* s, int64_t ls, uint32_t* d, int64_t ld) {
  u32x4 a, b, c, e;
  std::memcpy(&a, s, 16);
  std::memcpy(&b, s + ls, 16);
  std::memcpy(&c, s + 2 * ls, 16);
  std::memcpy(&e, s + 3 * ls, 16);
  const u32x4 t0 = __builtin_shufflevector(a, b, 0, 4, 1, 5);
  const u32x4 t1 = __builtin_shufflevector(a, b, 2, 6, 3, 7);
  const u32x4 t2 = __builtin_shufflevector(c, e, 0, 4, 1, 5);
  const u32x4 t3 = __builtin_shufflevector(c, e, 2, 6, 3, 7);
  const u32x4 o0 = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
  const u32x4 o1 = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
  const u32x4 o2 = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
  const u32x4 o3 = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
  std::memcpy(d, &o0, 16);
  std::memcpy(d + ld, &o1, 16);
  std::memcpy(d + 2 * ld, &o2, 16);
  std::memcpy(d + 3 * ld, &o3, 16);
}

// One tile [r0, r1) x [c0, c1) of dst[c][r] = src[r][c]; 4-byte elements go by 4 x 4 blocks.
template <typename T>
void transpose_tile(const T* s, T* d, int64_t rows, int64_t cols, int64_t r0, int64_t r1,
                    int64_t c0, int64_t c1) {
  int64_t r = r0;
  if constexpr (sizeof(T) == 4) {
    const uint32_t* s32 = reinterpret_cast<const uint32_t*>(s);
    uint32_t* d32 = reinterpret_cast<uint32_t*>(d);
    for (; r + 4 <= r1; r += 4) {
      int64_t c = c0;
      for (; c + 4 <= c1; c += 4) transpose_4x4(s32 + r * cols + c, cols, d32 + c * rows + r, rows);
      for (; c < c1; ++c)
        for (int64_t k = r; k < r + 4; ++k) d[c * rows + k] = s[k * cols + c];
    }
  }
  // Rows left over (and every row of other element sizes): contiguous reads, strided writes.
  for (; r < r1; ++r)
    for (int64_t c = c0; c < c1; ++c) d[c * rows + r] = s[r * cols + c];
}

template <typename T>
void transpose_tiles(const KernelContext& ctx, const T* src, T* dst, int64_t batch, int64_t rows,
                     int64_t cols) {
  // dst[b][c][r] = src[b][r][c], by 32 x 32 tiles.
  constexpr int64_t kTile = 32;
  const int64_t tr = (rows + kTile - 1) / kTile, tc = (cols + kTile - 1) / kTile;
  parallel_for_work(ctx, batch * tr * tc, 2.0 * kTile * kTile, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / (tr * tc), r0 = (t / tc) % tr * kTile, c0 = t % tc * kTile;
      transpose_tile(src + b * rows * cols, dst + b * rows * cols, rows, cols, r0,
                     std::min(rows, r0 + kTile), c0, std::min(cols, c0 + kTile));
    }
  });
}

class TransposeKernel : public Kernel {
 public:
  explicit TransposeKernel(const Node& node)
      : ref_(make_reference_kernel(node)), perm_(node.attr_ints_or("perm", {})) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor& x = *inputs[0];
    Tensor& y = *outputs[0];
    std::vector<int64_t> perm = perm_;
    if (perm.empty())
      for (int64_t d = static_cast<int64_t>(x.rank()) - 1; d >= 0; --d) perm.push_back(d);
    const size_t es = dtype_size(x.dtype());
    if (perm.size() != x.rank() || y.numel() != x.numel() || x.numel() == 0 ||
        (es != 1 && es != 2 && es != 4 && es != 8)) {
      fallback(ctx, inputs, outputs);
      return;
    }
    const Reduced r = reduce(x.shape(), perm);
    const size_t n = r.dims.size();
    const char* src = static_cast<const char*>(x.raw());
    char* dst = static_cast<char*>(y.raw());
    if (n <= 1) {  // nothing moves
      std::memcpy(dst, src, x.nbytes());
      return;
    }
    if (r.perm[n - 1] == static_cast<int64_t>(n - 1)) {
      copy_rows(ctx, r, src, dst, es);
      return;
    }
    // A batch of 2-D transposes: (0, ..., n-3, n-1, n-2) with nothing before the last two moving.
    bool batched_2d = r.perm[n - 1] == static_cast<int64_t>(n - 2) &&
                      r.perm[n - 2] == static_cast<int64_t>(n - 1);
    for (size_t i = 0; i + 2 < n; ++i) batched_2d = batched_2d && r.perm[i] == int64_t(i);
    if (!batched_2d) {
      fallback(ctx, inputs, outputs);
      return;
    }
    int64_t batch = 1;
    for (size_t i = 0; i + 2 < n; ++i) batch *= r.dims[i];
    const int64_t rows = r.dims[n - 2], cols = r.dims[n - 1];
    switch (es) {
      case 1:
        transpose_tiles(ctx, reinterpret_cast<const uint8_t*>(src), reinterpret_cast<uint8_t*>(dst),
                        batch, rows, cols);
        break;
      case 2:
        transpose_tiles(ctx, reinterpret_cast<const uint16_t*>(src),
                        reinterpret_cast<uint16_t*>(dst), batch, rows, cols);
        break;
      case 4:
        transpose_tiles(ctx, reinterpret_cast<const uint32_t*>(src),
                        reinterpret_cast<uint32_t*>(dst), batch, rows, cols);
        break;
      default:
        transpose_tiles(ctx, reinterpret_cast<const uint64_t*>(src),
                        reinterpret_cast<uint64_t*>(dst), batch, rows, cols);
        break;
    }
  }

 private:
  // The innermost dim stays in place: copy rows of dims[n-1] elements, walking the output in
  // order and finding each row's start in the input.
  static void copy_rows(const KernelContext& ctx, const Reduced& r, const char* src, char* dst,
                        size_t es) {
    const size_t n = r.dims.size();
    const std::vector<int64_t> in_strides = contiguous_strides(r.dims);
    std::vector<int64_t> out_dims, strides;  // output order, input strides of each
    for (size_t i = 0; i + 1 < n; ++i) {
      out_dims.push_back(r.dims[static_cast<size_t>(r.perm[i])]);
      strides.push_back(in_strides[static_cast<size_t>(r.perm[i])]);
    }
    const int64_t row = r.dims[n - 1];
    int64_t rows = 1;
    for (int64_t d : out_dims) rows *= d;
    const size_t row_bytes = static_cast<size_t>(row) * es;
    parallel_for_work(ctx, rows, 2.0 * double(row), [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        int64_t rem = o, at = 0;
        for (size_t d = out_dims.size(); d-- > 0;) {
          at += (rem % out_dims[d]) * strides[d];
          rem /= out_dims[d];
        }
        std::memcpy(dst + o * row_bytes, src + at * static_cast<int64_t>(es), row_bytes);
      }
    });
  }

  void fallback(const KernelContext& ctx, std::span<const Tensor* const> inputs,
                std::span<Tensor* const> outputs) {
    note_reference_fallback();
    ref_->compute(ctx, inputs, outputs);
  }

  std::unique_ptr<Kernel> ref_;
  std::vector<int64_t> perm_;
};

std::unique_ptr<Kernel> make_transpose(const Node& node) {
  if (!node.has_input(0)) return nullptr;
  return std::make_unique<TransposeKernel>(node);
}

}  // namespace

void register_transpose_kernels(KernelRegistry& r) {
  r.add("Transpose", make_transpose);
}

}  // namespace tandem::cpu

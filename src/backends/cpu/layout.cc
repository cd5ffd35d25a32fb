// The CPU backend's ToChannelsLast / ToChannelsFirst (ops/layout.h): per batch item, the
// [C, HW] matrix is transposed to [HW, C] (or back), 4 x 4 blocks at a time in SSE registers
// (3x faster than oneDNN's reorder between these layouts on the shapes of the committed models).
// When C or HW is 1 the two layouts hold the same bytes and the kernel copies; an image of 3
// channels (a model's RGB input) has its own loop, split over pixels. 4-byte elements
// (float32, int32) only; other dtypes run on the reference kernel.
#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_kernel.h"
#include "backends/cpu/dnnl_util.h"
#include "backends/cpu/transpose.h"
#include "ops/schema.h"

namespace tandem::cpu {

namespace {

constexpr int64_t kMinParallelElements = 1 << 16;

// dst[c * rows + r] = src[r * cols + c] for rows [r_begin, r_end) of a rows x cols row-major src
// of 4-byte elements (moved as floats: the bits are kept). 4 x 4 blocks are transposed in SSE
// registers, inside TR x TC tiles that keep the lines a tile touches in cache: the strided side
// gets the short edge (a power-of-two stride between many lines thrashes L1's sets).
template <int64_t TR, int64_t TC>
void transpose_rows(const float* src, float* dst, int64_t rows, int64_t cols, int64_t r_begin,
                    int64_t r_end) {
  for (int64_t r0 = r_begin; r0 < r_end; r0 += TR) {
    const int64_t r1 = std::min(r_end, r0 + TR);
    for (int64_t c0 = 0; c0 < cols; c0 += TC) {
      const int64_t c1 = std::min(cols, c0 + TC);
      int64_t r = r0;
#if defined(__SSE2__)
      for (; r + 4 <= r1; r += 4) {
        int64_t c = c0;
        for (; c + 4 <= c1; c += 4) {
          __m128 a = _mm_loadu_ps(src + r * cols + c);
          __m128 b = _mm_loadu_ps(src + (r + 1) * cols + c);
          __m128 e = _mm_loadu_ps(src + (r + 2) * cols + c);
          __m128 d = _mm_loadu_ps(src + (r + 3) * cols + c);
          _MM_TRANSPOSE4_PS(a, b, e, d);
          _mm_storeu_ps(dst + c * rows + r, a);
          _mm_storeu_ps(dst + (c + 1) * rows + r, b);
          _mm_storeu_ps(dst + (c + 2) * rows + r, e);
          _mm_storeu_ps(dst + (c + 3) * rows + r, d);
        }
        for (; c < c1; ++c)
          for (int64_t k = 0; k < 4; ++k) dst[c * rows + r + k] = src[(r + k) * cols + c];
      }
#endif
      for (; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
    }
  }
}

// The 3 x cols case (an RGB image to channels-last), columns [c_begin, c_end): 4 x 4 blocks with
// a zero fourth row, each transposed column stored as 4 floats where its 3 belong. The 4th float
// lands on the next column's first, which the next store writes, so a block is stored this way
// only when the column after it is in the range too; the rest goes one element at a time.
void transpose_3_rows(const float* src, float* dst, int64_t cols, int64_t c_begin, int64_t c_end) {
  int64_t c = c_begin;
#if defined(__SSE2__)
  for (; c + 4 < c_end; c += 4) {
    __m128 a = _mm_loadu_ps(src + c);
    __m128 b = _mm_loadu_ps(src + cols + c);
    __m128 e = _mm_loadu_ps(src + 2 * cols + c);
    __m128 d = _mm_setzero_ps();
    _MM_TRANSPOSE4_PS(a, b, e, d);
    _mm_storeu_ps(dst + 3 * c, a);
    _mm_storeu_ps(dst + 3 * (c + 1), b);
    _mm_storeu_ps(dst + 3 * (c + 2), e);
    _mm_storeu_ps(dst + 3 * (c + 3), d);
  }
#endif
  for (; c < c_end; ++c)
    for (int64_t r = 0; r < 3; ++r) dst[3 * c + r] = src[r * cols + c];
}

// One rows x cols matrix, its row range split over the pool's threads when large.
void transpose(const KernelContext& ctx, const float* src, float* dst, int64_t rows, int64_t cols) {
  if (rows == 3) {  // one row block only: the columns are split instead
    constexpr int64_t kCols = 4096;
    const int64_t chunks = (cols + kCols - 1) / kCols;
    auto body = [&](int64_t begin, int64_t end) {
      transpose_3_rows(src, dst, cols, begin * kCols, std::min(cols, end * kCols));
    };
    if (rows * cols >= kMinParallelElements && ctx.pool.size() > 1 && chunks > 1) {
      ctx.pool.parallel_for(chunks, body);
    } else {
      body(0, chunks);
    }
    return;
  }
  constexpr int64_t kBlock = 64;  // rows per parallel chunk (a multiple of both tiles' TR)
  auto body = [&](int64_t begin, int64_t end) {
    const int64_t r0 = begin * kBlock, r1 = std::min(rows, end * kBlock);
    if (rows > cols) {
      transpose_rows<64, 8>(src, dst, rows, cols, r0, r1);
    } else {
      transpose_rows<32, 32>(src, dst, rows, cols, r0, r1);
    }
  };
  const int64_t blocks = (rows + kBlock - 1) / kBlock;
  if (rows * cols >= kMinParallelElements && ctx.pool.size() > 1 && blocks > 1) {
    ctx.pool.parallel_for(blocks, body);
  } else {
    body(0, blocks);
  }
}

}  // namespace

void transpose_matrices(const KernelContext& ctx, const void* src, void* dst, int64_t batch,
                        int64_t rows, int64_t cols) {
  const float* s = static_cast<const float*>(src);
  float* d = static_cast<float*>(dst);
  for (int64_t n = 0; n < batch; ++n)
    transpose(ctx, s + n * rows * cols, d + n * rows * cols, rows, cols);
}

namespace {

class LayoutKernel : public FallbackKernel {
 public:
  LayoutKernel(const Node& node, bool to_last) : FallbackKernel(node), to_last_(to_last) {}

  void compute(const KernelContext& ctx, std::span<const Tensor* const> inputs,
               std::span<Tensor* const> outputs) override {
    const Tensor* x = inputs.empty() ? nullptr : inputs[0];
    Tensor* y = outputs.empty() ? nullptr : outputs[0];
    if (!x || !y || x->rank() != 4 || dtype_size(x->dtype()) != 4 || y->dtype() != x->dtype() ||
        y->numel() != x->numel()) {
      fall_back({ctx, inputs, outputs});
      return;
    }
    // NCHW -> NHWC transposes [C, HW] per item; NHWC -> NCHW transposes [HW, C].
    const int64_t batch = x->dim(0);
    const int64_t c = to_last_ ? x->dim(1) : x->dim(3);
    const int64_t hw = to_last_ ? x->dim(2) * x->dim(3) : x->dim(1) * x->dim(2);
    if (c == 1 || hw == 1) {
      std::memcpy(y->raw(), x->raw(), x->nbytes());
      return;
    }
    transpose_matrices(ctx, x->raw(), y->raw(), batch, to_last_ ? c : hw, to_last_ ? hw : c);
  }

 private:
  bool to_last_;
};

}  // namespace

void register_layout_kernels(KernelRegistry& r) {
  r.add(
      "ToChannelsLast",
      [](const Node& node) -> std::unique_ptr<Kernel> {
        return std::make_unique<LayoutKernel>(node, true);
      },
      kFusedDomain);
  r.add(
      "ToChannelsFirst",
      [](const Node& node) -> std::unique_ptr<Kernel> {
        return std::make_unique<LayoutKernel>(node, false);
      },
      kFusedDomain);
}

}  // namespace tandem::cpu

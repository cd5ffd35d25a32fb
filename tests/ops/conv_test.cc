// Conv family: expected values come from hand calculations or from a naive per-element evaluation
// of the ONNX definition written here (one output element at a time, bounds-checked taps), not
// from the kernels.
#include <gtest/gtest.h>

#include <array>
#include <random>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_int;
using testing::attr_ints;
using testing::attr_string;
using testing::f32;
using testing::max_abs_diff;
using testing::OpTest;

// Float32, uniform in [-1, 1).
Tensor random_f32(const Shape& s, uint32_t seed) {
  return testing::random_tensor(DataType::kFloat32, s, seed);
}

// Spatial shapes padded to 3 axes with leading 1s, for the naive loops below.
std::array<int64_t, 3> pad3(const Shape& s, size_t from, int64_t fill = 1) {
  std::array<int64_t, 3> out{fill, fill, fill};
  const size_t n = s.size() - from;
  for (size_t i = 0; i < n; ++i) out[3 - n + i] = s[from + i];
  return out;
}
std::array<int64_t, 3> pad3v(const std::vector<int64_t>& v, int64_t fill) {
  std::array<int64_t, 3> out{fill, fill, fill};
  for (size_t i = 0; i < v.size(); ++i) out[3 - v.size() + i] = v[i];
  return out;
}

struct ConvCase {
  Shape x, w;
  int64_t group;
  std::vector<int64_t> strides, dilations, pads_begin, pads_end;
};

// Y[n, m, o] = B[m] + sum_{c in group(m), k} X[n, c, o*s + k*d - pad_begin] * W[m, c', k].
Tensor naive_conv(const ConvCase& c, const Tensor& x, const Tensor& w, const Tensor* b) {
  const size_t nd = c.x.size() - 2;
  auto in = pad3(c.x, 2), ker = pad3(c.w, 2);
  auto s = pad3v(c.strides, 1), d = pad3v(c.dilations, 1), pb = pad3v(c.pads_begin, 0),
       pe = pad3v(c.pads_end, 0);
  std::array<int64_t, 3> out;
  for (int a = 0; a < 3; ++a) out[a] = (in[a] + pb[a] + pe[a] - (ker[a] - 1) * d[a] - 1) / s[a] + 1;
  const int64_t N = c.x[0], C = c.x[1], M = c.w[0], cg = C / c.group, mg = M / c.group;
  Shape ys{N, M};
  for (size_t i = 0; i < nd; ++i) ys.push_back(out[3 - nd + i]);
  Tensor y(DataType::kFloat32, ys);
  const float* xd = x.data<float>();
  const float* wd = w.data<float>();
  float* yd = y.data<float>();
  int64_t at = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t o0 = 0; o0 < out[0]; ++o0)
        for (int64_t o1 = 0; o1 < out[1]; ++o1)
          for (int64_t o2 = 0; o2 < out[2]; ++o2) {
            double acc = b ? b->data<float>()[m] : 0.0;
            for (int64_t ci = 0; ci < cg; ++ci)
              for (int64_t k0 = 0; k0 < ker[0]; ++k0)
                for (int64_t k1 = 0; k1 < ker[1]; ++k1)
                  for (int64_t k2 = 0; k2 < ker[2]; ++k2) {
                    int64_t i0 = o0 * s[0] + k0 * d[0] - pb[0];
                    int64_t i1 = o1 * s[1] + k1 * d[1] - pb[1];
                    int64_t i2 = o2 * s[2] + k2 * d[2] - pb[2];
                    if (i0 < 0 || i0 >= in[0] || i1 < 0 || i1 >= in[1] || i2 < 0 || i2 >= in[2])
                      continue;
                    int64_t ch = (m / mg) * cg + ci;
                    acc += double(xd[(((n * C + ch) * in[0] + i0) * in[1] + i1) * in[2] + i2]) *
                           wd[(((m * cg + ci) * ker[0] + k0) * ker[1] + k1) * ker[2] + k2];
                  }
            yd[at++] = static_cast<float>(acc);
          }
  return y;
}

TEST(Conv, HandComputed2D) {
  // 3x3 input, 2x2 all-ones kernel, no padding: each output is the sum of a 2x2 block.
  Tensor x = f32({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Tensor w = f32({1, 1, 2, 2}, {1, 1, 1, 1});
  Tensor b = f32({1}, {0.5f});
  auto y = OpTest("Conv").inputs({x, w, b}).run_ref();
  EXPECT_EQ(y[0].shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(max_abs_diff(y[0], f32({1, 1, 2, 2}, {12.5f, 16.5f, 24.5f, 28.5f})), 0.0);
}

TEST(Conv, MatchesNaiveDefinition) {
  const ConvCase cases[] = {
      {{2, 4, 11}, {6, 2, 3}, 2, {2}, {2}, {1}, {0}},                   // 1-D, groups
      {{1, 3, 9, 8}, {4, 3, 3, 2}, 1, {1, 2}, {1, 1}, {1, 0}, {2, 1}},  // asymmetric pads
      {{2, 4, 7, 7}, {4, 1, 3, 3}, 4, {2, 2}, {2, 1}, {1, 1}, {1, 1}},  // depthwise
      {{1, 2, 5, 6, 7}, {4, 1, 3, 2, 3}, 2, {1, 2, 1}, {1, 1, 2}, {1, 0, 2}, {0, 1, 1}},  // 3-D
      {{1, 8, 16, 16}, {8, 8, 3, 3}, 1, {1, 1}, {1, 1}, {1, 1}, {1, 1}},
  };
  uint32_t seed = 1;
  for (const ConvCase& c : cases) {
    Tensor x = random_f32(c.x, seed++);
    Tensor w = random_f32(c.w, seed++);
    Tensor b = random_f32({c.w[0]}, seed++);
    std::vector<int64_t> pads = c.pads_begin;
    pads.insert(pads.end(), c.pads_end.begin(), c.pads_end.end());
    auto y = OpTest("Conv")
                 .inputs({x, w, b})
                 .attr("group", attr_int(c.group))
                 .attr("strides", c.strides)
                 .attr("dilations", c.dilations)
                 .attr("pads", pads)
                 .run_ref();
    Tensor want = naive_conv(c, x, w, &b);
    EXPECT_LT(max_abs_diff(y[0], want), 1e-4) << shape_str(c.x) << " " << shape_str(c.w);
  }
}

TEST(Conv, AutoPadSameLowerAndUpper) {
  // in 7, kernel 4, stride 2 -> out 4; total padding 3: SAME_UPPER puts 1 first, SAME_LOWER 2.
  Tensor x = random_f32({1, 2, 7, 7}, 11);
  Tensor w = random_f32({3, 2, 4, 4}, 12);
  for (auto [mode, begin] : {std::pair{"SAME_UPPER", int64_t(1)}, {"SAME_LOWER", int64_t(2)}}) {
    auto y = OpTest("Conv").inputs({x, w}).attr("auto_pad", mode).attr("strides", {2, 2}).run_ref();
    ConvCase c{{1, 2, 7, 7},   {3, 2, 4, 4},          1, {2, 2}, {1, 1},
               {begin, begin}, {3 - begin, 3 - begin}};
    Tensor want = naive_conv(c, x, w, nullptr);
    ASSERT_EQ(y[0].shape(), (Shape{1, 3, 4, 4})) << mode;
    EXPECT_LT(max_abs_diff(y[0], want), 1e-5) << mode;
  }
  auto valid =
      OpTest("Conv").inputs({x, w}).attr("auto_pad", "VALID").attr("strides", {2, 2}).run_ref();
  EXPECT_EQ(valid[0].shape(), (Shape{1, 3, 2, 2}));
}

TEST(ConvTranspose, HandComputed1D) {
  // x = [1, 2], w = [1, 10, 100], stride 2: x0*w lands at 0..2, x1*w at 2..4.
  Tensor x = f32({1, 1, 2}, {1, 2});
  Tensor w = f32({1, 1, 3}, {1, 10, 100});
  auto y = OpTest("ConvTranspose").inputs({x, w}).attr("strides", {2}).run_ref();
  EXPECT_EQ(max_abs_diff(y[0], f32({1, 1, 5}, {1, 10, 102, 20, 200})), 0.0);
  // pads [1, 1] crop one element each side; output_padding adds one (zero) at the end.
  y = OpTest("ConvTranspose")
          .inputs({x, w})
          .attr("strides", {2})
          .attr("pads", {1, 1})
          .attr("output_padding", {1})
          .run_ref();
  EXPECT_EQ(max_abs_diff(y[0], f32({1, 1, 4}, {10, 102, 20, 200})), 0.0);
  // output_shape 6: the extra element goes to the end.
  y = OpTest("ConvTranspose")
          .inputs({x, w})
          .attr("strides", {2})
          .attr("output_shape", {6})
          .run_ref();
  EXPECT_EQ(max_abs_diff(y[0], f32({1, 1, 6}, {1, 10, 102, 20, 200, 0})), 0.0);
}

TEST(ConvTranspose, MatchesScatterDefinition) {
  // 2-D, groups 2, strides (2,3), dilations (1,2), pads (1,0,0,1), output_padding (1,2).
  const Shape xs{2, 4, 3, 4}, ws{4, 3, 3, 2};
  const int64_t group = 2, M = 6;
  const std::array<int64_t, 2> s{2, 3}, d{1, 2}, pb{1, 0}, pe{0, 1}, op{1, 2};
  Tensor x = random_f32(xs, 21), w = random_f32(ws, 22), b = random_f32({M}, 23);
  std::array<int64_t, 2> out;
  for (int a = 0; a < 2; ++a)
    out[a] = s[a] * (xs[2 + a] - 1) + op[a] + (ws[2 + a] - 1) * d[a] + 1 - pb[a] - pe[a];
  Tensor want(DataType::kFloat32, {2, M, out[0], out[1]});
  float* wd = want.data<float>();
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = 0; i < out[0] * out[1]; ++i)
        wd[(n * M + m) * out[0] * out[1] + i] = b.data<float>()[m];
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 4; ++c)
      for (int64_t mi = 0; mi < 3; ++mi)
        for (int64_t i0 = 0; i0 < 3; ++i0)
          for (int64_t i1 = 0; i1 < 4; ++i1)
            for (int64_t k0 = 0; k0 < 3; ++k0)
              for (int64_t k1 = 0; k1 < 2; ++k1) {
                int64_t o0 = i0 * s[0] + k0 * d[0] - pb[0], o1 = i1 * s[1] + k1 * d[1] - pb[1];
                if (o0 < 0 || o0 >= out[0] || o1 < 0 || o1 >= out[1]) continue;
                int64_t m = (c / 2) * 3 + mi;
                wd[((n * M + m) * out[0] + o0) * out[1] + o1] +=
                    x.data<float>()[((n * 4 + c) * 3 + i0) * 4 + i1] *
                    w.data<float>()[((c * 3 + mi) * 3 + k0) * 2 + k1];
              }
  auto y = OpTest("ConvTranspose")
               .inputs({x, w, b})
               .attr("group", attr_int(group))
               .attr("strides", {2, 3})
               .attr("dilations", {1, 2})
               .attr("pads", {1, 0, 0, 1})
               .attr("output_padding", {1, 2})
               .run_ref();
  EXPECT_LT(max_abs_diff(y[0], want), 1e-5);
}

TEST(Conv, Errors) {
  Tensor x = random_f32({1, 3, 5, 5}, 31);
  // Channel mismatch: W expects 2 input channels.
  EXPECT_THROW(OpTest("Conv").inputs({x, random_f32({4, 2, 3, 3}, 32)}).run_ref(), Error);
  // Kernel larger than the (unpadded) input.
  EXPECT_THROW(OpTest("Conv").inputs({x, random_f32({4, 3, 7, 7}, 33)}).run_ref(), Error);
  // kernel_shape attribute disagreeing with W.
  EXPECT_THROW(OpTest("Conv")
                   .inputs({x, random_f32({4, 3, 3, 3}, 34)})
                   .attr("kernel_shape", {2, 2})
                   .run_ref(),
               Error);
  // Integer input is not supported.
  Tensor xi = Tensor::from_vector(DataType::kInt32, {1, 1, 2, 2}, std::vector<int32_t>{1, 2, 3, 4});
  Tensor wi = Tensor::from_vector(DataType::kInt32, {1, 1, 1, 1}, std::vector<int32_t>{1});
  try {
    OpTest("Conv").inputs({xi, wi}).run_ref();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
  }
}

}  // namespace
}  // namespace tandem

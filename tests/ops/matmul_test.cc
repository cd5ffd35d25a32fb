// MatMul and Gemm: expected values from a naive triple loop written here (or by hand).
#include <gtest/gtest.h>

#include <vector>

#include "core/half.h"
#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_float;
using testing::attr_int;
using testing::max_abs_diff;
using testing::OpTest;

// Deterministic, non-symmetric values.
std::vector<float> seq(int64_t n, float scale = 0.1f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>((i * 7 + 3) % 11 - 5);
  return v;
}

using testing::f32;

TEST(MatMul, TwoDMatchesNaive) {
  const int64_t m = 3, k = 4, n = 5;
  std::vector<float> a = seq(m * k), b = seq(k * n, 0.2f);
  std::vector<float> want(m * n, 0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t p = 0; p < k; ++p) want[i * n + j] += a[i * k + p] * b[p * n + j];
  auto out = OpTest("MatMul").inputs({f32({m, k}, a), f32({k, n}, b)}).run_ref();
  EXPECT_LT(max_abs_diff(out[0], f32({m, n}, want)), 1e-5);
}

TEST(MatMul, BatchDimsBroadcast) {
  // A [2,1,3,4] x B [3,4,2] -> [2,3,3,2]: A's batch dim 1 repeats over B's 3, B over A's 2.
  std::vector<float> a = seq(2 * 3 * 4), b = seq(3 * 4 * 2, 0.3f);
  std::vector<float> want(2 * 3 * 3 * 2, 0);
  for (int x = 0; x < 2; ++x)
    for (int y = 0; y < 3; ++y)
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 2; ++j) {
          float s = 0;
          for (int p = 0; p < 4; ++p) s += a[(x * 3 + i) * 4 + p] * b[(y * 4 + p) * 2 + j];
          want[((x * 3 + y) * 3 + i) * 2 + j] = s;
        }
  auto out = OpTest("MatMul").inputs({f32({2, 1, 3, 4}, a), f32({3, 4, 2}, b)}).run_ref();
  EXPECT_EQ(out[0].shape(), (Shape{2, 3, 3, 2}));
  EXPECT_LT(max_abs_diff(out[0], f32({2, 3, 3, 2}, want)), 1e-5);
}

TEST(MatMul, OneDOperands) {
  Tensor v = f32({3}, {1, 2, 3});
  auto dot = OpTest("MatMul").inputs({v, v}).run_ref();
  EXPECT_EQ(dot[0].shape(), Shape{});
  EXPECT_FLOAT_EQ(dot[0].data<float>()[0], 14);
  // [3] x [3,2] -> [2]
  auto vm = OpTest("MatMul").inputs({v, f32({3, 2}, {1, 0, 0, 1, 1, 1})}).run_ref();
  EXPECT_LT(max_abs_diff(vm[0], f32({2}, {4, 5})), 1e-6);
  // [2,3] x [3] -> [2]
  auto mv = OpTest("MatMul").inputs({f32({2, 3}, {1, 0, 1, 0, 1, 0}), v}).run_ref();
  EXPECT_LT(max_abs_diff(mv[0], f32({2}, {4, 2})), 1e-6);
  // [2,2,3] x [3] -> [2,2]
  auto bv =
      OpTest("MatMul").inputs({f32({2, 2, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1}), v}).run_ref();
  EXPECT_LT(max_abs_diff(bv[0], f32({2, 2}, {1, 2, 3, 6})), 1e-6);
}

TEST(MatMul, IntegerAndDoubleTypes) {
  auto i32 = OpTest("MatMul")
                 .inputs({Tensor::from_vector<int32_t>(DataType::kInt32, {2, 2}, {1, 2, 3, 4}),
                          Tensor::from_vector<int32_t>(DataType::kInt32, {2, 2}, {5, 6, 7, 8})})
                 .run_ref();
  EXPECT_EQ(max_abs_diff(i32[0],
                         Tensor::from_vector<int32_t>(DataType::kInt32, {2, 2}, {19, 22, 43, 50})),
            0);
  auto i64 = OpTest("MatMul")
                 .inputs({Tensor::from_vector<int64_t>(DataType::kInt64, {1, 2}, {1, -2}),
                          Tensor::from_vector<int64_t>(DataType::kInt64, {2, 1}, {3, 4})})
                 .run_ref();
  EXPECT_EQ(i64[0].data<int64_t>()[0], -5);
  auto f64 = OpTest("MatMul")
                 .inputs({Tensor::from_vector<double>(DataType::kFloat64, {1, 2}, {0.5, 0.25}),
                          Tensor::from_vector<double>(DataType::kFloat64, {2, 1}, {2, 4})})
                 .run_ref();
  EXPECT_DOUBLE_EQ(f64[0].data<double>()[0], 2.0);
}

TEST(MatMul, Float16ComputesInFloat) {
  std::vector<uint16_t> a = {float_to_half(1.5f), float_to_half(-2.0f)};
  std::vector<uint16_t> b = {float_to_half(2.0f), float_to_half(0.5f)};
  auto out = OpTest("MatMul")
                 .inputs({Tensor::from_vector(DataType::kFloat16, {1, 2}, a),
                          Tensor::from_vector(DataType::kFloat16, {2, 1}, b)})
                 .run_ref();
  EXPECT_FLOAT_EQ(half_to_float(out[0].data<uint16_t>()[0]), 2.0f);
}

TEST(MatMul, MismatchedInnerDimThrows) {
  EXPECT_THROW(OpTest("MatMul").inputs({f32({2, 3}, seq(6)), f32({4, 2}, seq(8))}).run_ref(),
               Error);
  EXPECT_THROW(
      OpTest("MatMul").inputs({f32({2, 2, 3}, seq(12)), f32({3, 3, 2}, seq(18))}).run_ref(), Error);
}

// Naive Gemm: alpha * op(A) op(B) + beta * C[i % cm][j % cn].
std::vector<float> naive_gemm(const std::vector<float>& a, const std::vector<float>& b,
                              const std::vector<float>* c, int64_t cm, int64_t cn, int64_t m,
                              int64_t k, int64_t n, bool ta, bool tb, float alpha, float beta) {
  std::vector<float> y(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      y[i * n + j] = alpha * s + (c ? beta * (*c)[(i % cm) * cn + (j % cn)] : 0.f);
    }
  return y;
}

TEST(Gemm, AllAttributesAndBiasShapes) {
  const int64_t m = 3, k = 5, n = 4;
  std::vector<float> a = seq(m * k), b = seq(k * n, 0.25f);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Tensor ta_t = f32(ta ? Shape{k, m} : Shape{m, k}, a);
      Tensor tb_t = f32(tb ? Shape{n, k} : Shape{k, n}, b);
      std::map<std::string, Attribute> attrs = {{"transA", attr_int(ta)},
                                                {"transB", attr_int(tb)},
                                                {"alpha", attr_float(0.5f)},
                                                {"beta", attr_float(2.0f)}};
      // C as [M,N], [N] (row broadcast), [M,1] and a scalar.
      struct CCase {
        Shape shape;
        int64_t cm, cn;
      } cases[] = {{{m, n}, m, n}, {{n}, 1, n}, {{m, 1}, m, 1}, {{}, 1, 1}};
      for (const CCase& cc : cases) {
        std::vector<float> c = seq(cc.cm * cc.cn, 1.0f);
        auto out = OpTest("Gemm").inputs({ta_t, tb_t, f32(cc.shape, c)}).attrs(attrs).run_ref();
        auto want = naive_gemm(a, b, &c, cc.cm, cc.cn, m, k, n, ta, tb, 0.5f, 2.0f);
        EXPECT_LT(max_abs_diff(out[0], f32({m, n}, want)), 1e-5)
            << "transA=" << ta << " transB=" << tb << " C " << shape_str(cc.shape);
      }
      auto no_c = OpTest("Gemm").inputs({ta_t, tb_t}).attrs(attrs).run_ref();
      EXPECT_LT(max_abs_diff(no_c[0], f32({m, n}, naive_gemm(a, b, nullptr, 1, 1, m, k, n, ta, tb,
                                                             0.5f, 2.0f))),
                1e-5);
    }
}

TEST(Gemm, BadShapesThrow) {
  EXPECT_THROW(OpTest("Gemm").inputs({f32({2, 3}, seq(6)), f32({2, 3}, seq(6))}).run_ref(), Error);
  // C [3] cannot broadcast to [2,2].
  EXPECT_THROW(
      OpTest("Gemm").inputs({f32({2, 3}, seq(6)), f32({3, 2}, seq(6)), f32({3}, seq(3))}).run_ref(),
      Error);
}

}  // namespace
}  // namespace tandem

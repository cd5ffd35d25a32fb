// Elementwise family: expected values come from the math (std:: functions or by hand), not from
// the kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/half.h"
#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::boolean;
using testing::f32;
using testing::i32;
using testing::i64;
using testing::max_abs_diff;
using testing::OpTest;

template <typename T>
std::vector<T> values(const Tensor& t) {
  return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

TEST(Elementwise, UnaryFloatMatchesStd) {
  std::vector<float> x = {-0.9f, -0.3f, 0.0f, 0.25f, 0.8f};
  Tensor in = f32({5}, x);
  struct Case {
    const char* op;
    double (*f)(double);
  } cases[] = {{"Exp", [](double v) { return std::exp(v); }},
               {"Sin", [](double v) { return std::sin(v); }},
               {"Cos", [](double v) { return std::cos(v); }},
               {"Tan", [](double v) { return std::tan(v); }},
               {"Asin", [](double v) { return std::asin(v); }},
               {"Acos", [](double v) { return std::acos(v); }},
               {"Atan", [](double v) { return std::atan(v); }},
               {"Sinh", [](double v) { return std::sinh(v); }},
               {"Cosh", [](double v) { return std::cosh(v); }},
               {"Asinh", [](double v) { return std::asinh(v); }},
               {"Atanh", [](double v) { return std::atanh(v); }},
               {"Erf", [](double v) { return std::erf(v); }},
               {"Floor", [](double v) { return std::floor(v); }},
               {"Ceil", [](double v) { return std::ceil(v); }},
               {"Abs", [](double v) { return std::fabs(v); }},
               {"Neg", [](double v) { return -v; }}};
  for (const Case& c : cases) {
    std::vector<float> want;
    for (float v : x) want.push_back(static_cast<float>(c.f(v)));
    EXPECT_LT(max_abs_diff(OpTest(c.op).input(in).run_ref()[0], f32({5}, want)), 1e-6) << c.op;
  }
}

TEST(Elementwise, LogSqrtReciprocalAcosh) {
  Tensor in = f32({2, 2}, {1.0f, 2.0f, 4.0f, 10.0f});
  EXPECT_LT(max_abs_diff(OpTest("Log").input(in).run_ref()[0],
                         f32({2, 2}, {0.0f, 0.693147181f, 1.386294361f, 2.302585093f})),
            1e-6);
  EXPECT_LT(max_abs_diff(OpTest("Sqrt").input(in).run_ref()[0],
                         f32({2, 2}, {1.0f, 1.414213562f, 2.0f, 3.16227766f})),
            1e-6);
  EXPECT_LT(max_abs_diff(OpTest("Reciprocal").input(in).run_ref()[0],
                         f32({2, 2}, {1, 0.5f, 0.25f, 0.1f})),
            1e-7);
  EXPECT_LT(max_abs_diff(OpTest("Acosh").input(in).run_ref()[0],
                         f32({2, 2}, {0.0f, 1.316957897f, 2.063437069f, 2.993222846f})),
            1e-6);
}

TEST(Elementwise, RoundHalfToEvenAndSign) {
  Tensor in = f32({8}, {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 2.4f, -2.6f, 0.0f});
  EXPECT_EQ(values<float>(OpTest("Round").input(in).run_ref()[0]),
            (std::vector<float>{0, 2, 2, -0.0f, -2, 2, -3, 0}));
  EXPECT_EQ(values<float>(OpTest("Sign").input(in).run_ref()[0]),
            (std::vector<float>{1, 1, 1, -1, -1, 1, -1, 0}));
  EXPECT_EQ(values<int32_t>(OpTest("Sign").input(i32({3}, {-7, 0, 9})).run_ref()[0]),
            (std::vector<int32_t>{-1, 0, 1}));
  EXPECT_EQ(values<int64_t>(OpTest("Abs").input(i64({3}, {-7, 0, 9})).run_ref()[0]),
            (std::vector<int64_t>{7, 0, 9}));
}

TEST(Elementwise, IsNaNIsInfNot) {
  const float inf = std::numeric_limits<float>::infinity();
  Tensor in = f32({4}, {1.0f, NAN, inf, -inf});
  Tensor nan_out = OpTest("IsNaN").input(in).run_ref()[0];
  EXPECT_EQ(nan_out.dtype(), DataType::kBool);
  EXPECT_EQ(values<uint8_t>(nan_out), (std::vector<uint8_t>{0, 1, 0, 0}));
  EXPECT_EQ(values<uint8_t>(OpTest("IsInf").input(in).run_ref()[0]),
            (std::vector<uint8_t>{0, 0, 1, 1}));
  EXPECT_EQ(values<uint8_t>(OpTest("IsInf").input(in).attr("detect_negative", 0).run_ref()[0]),
            (std::vector<uint8_t>{0, 0, 1, 0}));
  EXPECT_EQ(values<uint8_t>(OpTest("IsInf").input(in).attr("detect_positive", 0).run_ref()[0]),
            (std::vector<uint8_t>{0, 0, 0, 1}));
  EXPECT_EQ(values<uint8_t>(OpTest("Not").input(boolean({3}, {1, 0, 1})).run_ref()[0]),
            (std::vector<uint8_t>{0, 1, 0}));
}

TEST(Elementwise, AddBroadcastShapes) {
  // [2,3] + [3] (row broadcast), [2,1] + [1,3] (both sides broadcast), scalar + [2,3].
  Tensor a = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor out = OpTest("Add").inputs({a, f32({3}, {10, 20, 30})}).run_ref()[0];
  EXPECT_EQ(out.shape(), (Shape{2, 3}));
  EXPECT_EQ(values<float>(out), (std::vector<float>{11, 22, 33, 14, 25, 36}));

  out = OpTest("Sub").inputs({f32({2, 1}, {1, 2}), f32({1, 3}, {10, 20, 30})}).run_ref()[0];
  EXPECT_EQ(out.shape(), (Shape{2, 3}));
  EXPECT_EQ(values<float>(out), (std::vector<float>{-9, -19, -29, -8, -18, -28}));

  out = OpTest("Mul").inputs({f32({}, {2}), a}).run_ref()[0];
  EXPECT_EQ(values<float>(out), (std::vector<float>{2, 4, 6, 8, 10, 12}));

  // [2,1,3] * [4,1] -> [2,4,3]: every element checked against the index formula.
  std::vector<float> av(6), bv(4);
  for (int i = 0; i < 6; ++i) av[i] = static_cast<float>(i + 1);
  for (int i = 0; i < 4; ++i) bv[i] = static_cast<float>(10 * (i + 1));
  out = OpTest("Mul").inputs({f32({2, 1, 3}, av), f32({4, 1}, bv)}).run_ref()[0];
  ASSERT_EQ(out.shape(), (Shape{2, 4, 3}));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 3; ++k)
        EXPECT_EQ(out.data<float>()[(i * 4 + j) * 3 + k], av[i * 3 + k] * bv[j]);
}

TEST(Elementwise, LargeTensorsUseEveryPath) {
  // Big enough for the thread pool: equal shapes, scalar and broadcast paths must agree with a
  // plain formula.
  const int64_t c = 8, hw = 64 * 64;
  std::vector<float> x(c * hw), bias(c);
  for (int64_t i = 0; i < c * hw; ++i) x[i] = static_cast<float>(i % 97) * 0.5f;
  for (int64_t i = 0; i < c; ++i) bias[i] = static_cast<float>(i);
  Tensor big = f32({1, c, 64, 64}, x);
  Tensor same = OpTest("Add").inputs({big, big}).run_ref()[0];
  Tensor scalar = OpTest("Div").inputs({big, f32({1}, {2.0f})}).run_ref()[0];
  Tensor bcast = OpTest("Add").inputs({big, f32({c, 1, 1}, bias)}).run_ref()[0];
  for (int64_t i = 0; i < c * hw; ++i) {
    ASSERT_EQ(same.data<float>()[i], x[i] * 2);
    ASSERT_EQ(scalar.data<float>()[i], x[i] / 2);
    ASSERT_EQ(bcast.data<float>()[i], x[i] + bias[i / hw]);
  }
}

TEST(Elementwise, IntegerDivTruncatesAndModSigns) {
  Tensor a = i32({4}, {7, -7, 7, -7});
  Tensor b = i32({4}, {2, 2, -2, -2});
  EXPECT_EQ(values<int32_t>(OpTest("Div").inputs({a, b}).run_ref()[0]),
            (std::vector<int32_t>{3, -3, -3, 3}));
  // Python's %: the sign of the divisor.
  EXPECT_EQ(values<int32_t>(OpTest("Mod").inputs({a, b}).run_ref()[0]),
            (std::vector<int32_t>{1, 1, -1, -1}));
  // C's fmod: the sign of the dividend.
  EXPECT_EQ(values<int32_t>(OpTest("Mod").inputs({a, b}).attr("fmod", 1).run_ref()[0]),
            (std::vector<int32_t>{1, -1, 1, -1}));
  Tensor fa = f32({3}, {5.5f, -5.5f, 5.5f});
  Tensor fb = f32({3}, {2.0f, 2.0f, -2.0f});
  EXPECT_EQ(values<float>(OpTest("Mod").inputs({fa, fb}).attr("fmod", 1).run_ref()[0]),
            (std::vector<float>{1.5f, -1.5f, 1.5f}));
}

TEST(Elementwise, PowMixedDtypes) {
  Tensor out = OpTest("Pow").inputs({f32({3}, {2, 3, 4}), i64({3}, {3, 2, -1})}).run_ref()[0];
  EXPECT_EQ(out.dtype(), DataType::kFloat32);
  EXPECT_EQ(values<float>(out), (std::vector<float>{8, 9, 0.25f}));
  out = OpTest("Pow").inputs({i64({3}, {2, 3, 10}), f32({1}, {2.0f})}).run_ref()[0];
  EXPECT_EQ(out.dtype(), DataType::kInt64);
  EXPECT_EQ(values<int64_t>(out), (std::vector<int64_t>{4, 9, 100}));
  out = OpTest("Pow").inputs({i64({1}, {3}), i64({1}, {39})}).run_ref()[0];  // exact beyond 2^53
  EXPECT_EQ(values<int64_t>(out)[0], 4052555153018976267LL);
  out = OpTest("Pow").inputs({f32({2}, {4, 9}), f32({}, {0.5f})}).run_ref()[0];
  EXPECT_EQ(values<float>(out), (std::vector<float>{2, 3}));
}

TEST(Elementwise, BitShift) {
  Tensor x = Tensor::from_vector(DataType::kUInt8, {3}, std::vector<uint8_t>{16, 4, 1});
  Tensor y = Tensor::from_vector(DataType::kUInt8, {3}, std::vector<uint8_t>{1, 2, 3});
  EXPECT_EQ(
      values<uint8_t>(OpTest("BitShift").inputs({x, y}).attr("direction", "LEFT").run_ref()[0]),
      (std::vector<uint8_t>{32, 16, 8}));
  EXPECT_EQ(
      values<uint8_t>(OpTest("BitShift").inputs({x, y}).attr("direction", "RIGHT").run_ref()[0]),
      (std::vector<uint8_t>{8, 1, 0}));
}

TEST(Elementwise, VariadicMaxMinSumMean) {
  Tensor a = f32({3}, {1, 5, 3});
  Tensor b = f32({1}, {2});
  Tensor c = f32({2, 1}, {0, 10});
  Tensor out = OpTest("Max").inputs({a, b, c}).run_ref()[0];
  EXPECT_EQ(out.shape(), (Shape{2, 3}));
  EXPECT_EQ(values<float>(out), (std::vector<float>{2, 5, 3, 10, 10, 10}));
  EXPECT_EQ(values<float>(OpTest("Min").inputs({a, b, c}).run_ref()[0]),
            (std::vector<float>{0, 0, 0, 1, 2, 2}));
  EXPECT_EQ(values<float>(OpTest("Sum").inputs({a, b, c}).run_ref()[0]),
            (std::vector<float>{3, 7, 5, 13, 17, 15}));
  EXPECT_EQ(values<float>(OpTest("Mean").inputs({a, a}).run_ref()[0]),
            (std::vector<float>{1, 5, 3}));
  EXPECT_EQ(values<float>(OpTest("Sum").input(a).run_ref()[0]), (std::vector<float>{1, 5, 3}));
  Tensor nan_max = OpTest("Max").inputs({f32({2}, {NAN, 1}), f32({2}, {1, NAN})}).run_ref()[0];
  EXPECT_TRUE(std::isnan(nan_max.data<float>()[0]) && std::isnan(nan_max.data<float>()[1]));
  EXPECT_EQ(
      values<int32_t>(OpTest("Max").inputs({i32({2}, {-3, 4}), i32({2}, {2, -8})}).run_ref()[0]),
      (std::vector<int32_t>{2, 4}));
}

TEST(Elementwise, ComparisonsAndLogic) {
  auto run = [](const char* op, const Tensor& x, const Tensor& y) {
    return values<uint8_t>(OpTest(op).inputs({x, y}).run_ref()[0]);
  };
  Tensor a = i64({2, 2}, {1, 2, 3, 4});
  Tensor b = i64({2}, {2, 3});
  EXPECT_EQ(run("Equal", a, b), (std::vector<uint8_t>{0, 0, 0, 0}));
  EXPECT_EQ(run("Less", a, b), (std::vector<uint8_t>{1, 1, 0, 0}));
  EXPECT_EQ(run("Greater", a, b), (std::vector<uint8_t>{0, 0, 1, 1}));
  EXPECT_EQ(run("LessOrEqual", a, b), (std::vector<uint8_t>{1, 1, 0, 0}));
  EXPECT_EQ(run("GreaterOrEqual", a, i64({}, {2})), (std::vector<uint8_t>{0, 1, 1, 1}));
  Tensor p = boolean({4}, {0, 0, 1, 1});
  Tensor q = boolean({4}, {0, 1, 0, 1});
  EXPECT_EQ(run("And", p, q), (std::vector<uint8_t>{0, 0, 0, 1}));
  EXPECT_EQ(run("Or", p, q), (std::vector<uint8_t>{0, 1, 1, 1}));
  EXPECT_EQ(run("Xor", p, q), (std::vector<uint8_t>{0, 1, 1, 0}));
  EXPECT_EQ(run("Equal", p, q), (std::vector<uint8_t>{1, 0, 0, 1}));
}

TEST(Elementwise, WhereBroadcastsThreeWays) {
  Tensor cond = boolean({2, 1}, {1, 0});
  Tensor x = f32({3}, {1, 2, 3});
  Tensor y = f32({}, {-1});
  Tensor out = OpTest("Where").inputs({cond, x, y}).run_ref()[0];
  EXPECT_EQ(out.shape(), (Shape{2, 3}));
  EXPECT_EQ(values<float>(out), (std::vector<float>{1, 2, 3, -1, -1, -1}));
  Tensor iout = OpTest("Where")
                    .inputs({boolean({2}, {0, 1}), i64({2}, {5, 6}), i64({2}, {7, 8})})
                    .run_ref()[0];
  EXPECT_EQ(values<int64_t>(iout), (std::vector<int64_t>{7, 6}));
}

TEST(Elementwise, Float16ComputedInFloat) {
  std::vector<uint16_t> a = {float_to_half(1.5f), float_to_half(-2.0f)};
  std::vector<uint16_t> b = {float_to_half(0.25f), float_to_half(4.0f)};
  Tensor out = OpTest("Add")
                   .inputs({Tensor::from_vector(DataType::kFloat16, {2}, a),
                            Tensor::from_vector(DataType::kFloat16, {2}, b)})
                   .run_ref()[0];
  ASSERT_EQ(out.dtype(), DataType::kFloat16);
  EXPECT_EQ(half_to_float(out.data<uint16_t>()[0]), 1.75f);
  EXPECT_EQ(half_to_float(out.data<uint16_t>()[1]), 2.0f);
  Tensor cmp = OpTest("Less")
                   .inputs({Tensor::from_vector(DataType::kFloat16, {2}, a),
                            Tensor::from_vector(DataType::kFloat16, {2}, b)})
                   .run_ref()[0];
  EXPECT_EQ(values<uint8_t>(cmp), (std::vector<uint8_t>{0, 1}));
}

TEST(Elementwise, Errors) {
  // Incompatible broadcast, mixed dtypes, float-only op on ints, integer division by zero.
  EXPECT_THROW(
      OpTest("Add").inputs({f32({2, 3}, std::vector<float>(6)), f32({4}, {1, 2, 3, 4})}).run_ref(),
      Error);
  EXPECT_THROW(OpTest("Add").inputs({f32({1}, {1}), i32({1}, {1})}).run_ref(), Error);
  EXPECT_THROW(OpTest("Exp").input(i32({1}, {1})).run_ref(), Error);
  EXPECT_THROW(OpTest("Div").inputs({i32({2}, {1, 2}), i32({2}, {1, 0})}).run_ref(), Error);
  EXPECT_THROW(OpTest("Mod").inputs({i64({1}, {1}), i64({1}, {0})}).run_ref(), Error);
  EXPECT_THROW(OpTest("And").inputs({f32({1}, {1}), f32({1}, {1})}).run_ref(), Error);
  EXPECT_THROW(OpTest("Where").inputs({f32({1}, {1}), f32({1}, {1}), f32({1}, {1})}).run_ref(),
               Error);
  Tensor u = Tensor::from_vector(DataType::kUInt8, {1}, std::vector<uint8_t>{1});
  EXPECT_THROW(OpTest("BitShift").inputs({u, u}).attr("direction", "UP").run_ref(), Error);
}

// Opset < 7: broadcast = 1 with `axis` lines B up with A's dims starting at `axis` (default
// rank(A) - rank(B), numpy's suffix alignment). Expected values: out[i][j] = a[i][j] op b[...].
TEST(Elementwise, LegacyAxisBroadcast) {
  const Tensor a = f32({2, 3}, {1, 2, 3, 4, 5, 6});
  // `op` at opset 6 with broadcast = 1 and B lined up at `axis`.
  auto legacy = [](const char* op, const Tensor& x, const Tensor& y, int axis) {
    return OpTest(op).inputs({x, y}).attr("broadcast", 1).attr("axis", axis).opset(6);
  };
  // B [2] along axis 0: one value per row (numpy would reject [2] against [2,3]).
  Tensor out = legacy("Add", a, f32({2}, {10, 20}), 0).run_ref()[0];
  ASSERT_EQ(out.shape(), (Shape{2, 3}));
  EXPECT_EQ(max_abs_diff(out, f32({2, 3}, {11, 12, 13, 24, 25, 26})), 0);
  // B [3] along axis 1 is the suffix case.
  out = legacy("Sub", a, f32({3}, {1, 2, 3}), 1).run_ref()[0];
  EXPECT_EQ(max_abs_diff(out, f32({2, 3}, {0, 0, 0, 3, 3, 3})), 0);
  // Size-1 dims in B broadcast as usual: B [2,1] at axis 0.
  out = legacy("Mul", a, f32({2, 1}, {2, 3}), 0).run_ref()[0];
  EXPECT_EQ(max_abs_diff(out, f32({2, 3}, {2, 4, 6, 12, 15, 18})), 0);

  // Rank 4: A [2,3,2,2], B [3,2] at axis 1: b[c][h] added to every a[n][c][h][w].
  std::vector<float> av(24), bv(6), expect(24);
  for (int i = 0; i < 24; ++i) av[i] = static_cast<float>(i);
  for (int i = 0; i < 6; ++i) bv[i] = 100.0f * static_cast<float>(i + 1);
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 2; ++h)
        for (int w = 0; w < 2; ++w) {
          const int i = ((n * 3 + c) * 2 + h) * 2 + w;
          expect[i] = av[i] + bv[c * 2 + h];
        }
  out = legacy("Add", f32({2, 3, 2, 2}, av), f32({3, 2}, bv), 1).run_ref()[0];
  EXPECT_EQ(max_abs_diff(out, f32({2, 3, 2, 2}, expect)), 0);

  // Comparisons and Pow take the same path; the output keeps A's shape.
  out = legacy("Greater", a, f32({2}, {2, 5}), 0).run_ref()[0];
  EXPECT_EQ(values<uint8_t>(out), (std::vector<uint8_t>{0, 0, 1, 0, 0, 1}));
  out = legacy("Pow", a, f32({2}, {1, 2}), 0).run_ref()[0];
  EXPECT_EQ(max_abs_diff(out, f32({2, 3}, {1, 2, 3, 16, 25, 36})), 0);

  // From opset 7 `axis` means nothing and numpy rules apply: [2] against [2,3] is an error.
  EXPECT_THROW(OpTest("Add").inputs({a, f32({2}, {10, 20})}).opset(7).run_ref(), Error);
  // B must fit inside A at `axis`: dims that disagree, or running past A's rank.
  EXPECT_THROW(legacy("Add", a, f32({3}, {1, 2, 3}), 0).run_ref(), Error);
  EXPECT_THROW(legacy("Add", a, f32({3, 1}, {1, 2, 3}), 1).run_ref(), Error);
}

}  // namespace
}  // namespace tandem

// Reduce* and ArgMax/ArgMin: expected values computed by hand or by loops written here.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::f32;
using testing::i64;
using testing::max_abs_diff;
using testing::OpTest;

// x[i][j][k] = i*6 + j*2 + k - 5 for shape [2,3,2].
std::vector<float> ramp() {
  std::vector<float> v(12);
  for (int i = 0; i < 12; ++i) v[i] = static_cast<float>(i - 5);
  return v;
}

TEST(Reduce, AllOpsOverAxis1KeepDims) {
  std::vector<float> x = ramp();
  // Reduce over axis 1 of [2,3,2]: groups (i, k) with elements j = 0..2.
  struct Case {
    const char* op;
    double (*fold)(const std::vector<double>&);
  } cases[] = {
      {"ReduceSum",
       [](const std::vector<double>& v) {
         double s = 0;
         for (double e : v) s += e;
         return s;
       }},
      {"ReduceMean",
       [](const std::vector<double>& v) {
         double s = 0;
         for (double e : v) s += e;
         return s / v.size();
       }},
      {"ReduceMax",
       [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }},
      {"ReduceMin",
       [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }},
      {"ReduceProd",
       [](const std::vector<double>& v) {
         double s = 1;
         for (double e : v) s *= e;
         return s;
       }},
      {"ReduceL1",
       [](const std::vector<double>& v) {
         double s = 0;
         for (double e : v) s += std::abs(e);
         return s;
       }},
      {"ReduceL2",
       [](const std::vector<double>& v) {
         double s = 0;
         for (double e : v) s += e * e;
         return std::sqrt(s);
       }},
      {"ReduceSumSquare",
       [](const std::vector<double>& v) {
         double s = 0;
         for (double e : v) s += e * e;
         return s;
       }},
      {"ReduceLogSumExp",
       [](const std::vector<double>& v) {
         double s = 0;
         for (double e : v) s += std::exp(e);
         return std::log(s);
       }},
  };
  for (const Case& c : cases) {
    std::vector<float> want;
    for (int i = 0; i < 2; ++i)
      for (int k = 0; k < 2; ++k) {
        std::vector<double> g;
        for (int j = 0; j < 3; ++j) g.push_back(x[i * 6 + j * 2 + k]);
        want.push_back(static_cast<float>(c.fold(g)));
      }
    auto out = OpTest(c.op).inputs({f32({2, 3, 2}, x)}).attr("axes", {1}).opset(11).run_ref();
    EXPECT_LT(max_abs_diff(out[0], f32({2, 1, 2}, want)), 1e-4) << c.op;
    // Opset 18: the same through the axes input.
    auto out18 = OpTest(c.op).inputs({f32({2, 3, 2}, x), i64({1}, {-2})}).opset(18).run_ref();
    EXPECT_LT(max_abs_diff(out18[0], f32({2, 1, 2}, want)), 1e-4) << c.op << " opset 18";
  }
}

TEST(Reduce, LogSumAndNoKeepdims) {
  auto out = OpTest("ReduceLogSum")
                 .inputs({f32({2, 2}, {1, 2, 3, 4})})
                 .attr("axes", {0})
                 .attr("keepdims", 0)
                 .opset(13)
                 .run_ref();
  EXPECT_LT(max_abs_diff(out[0], f32({2}, {float(std::log(4.0)), float(std::log(6.0))})), 1e-6);
}

TEST(Reduce, DefaultAxesReduceEverything) {
  auto out = OpTest("ReduceMean").inputs({f32({2, 3, 2}, ramp())}).opset(13).run_ref();
  EXPECT_EQ(out[0].shape(), (Shape{1, 1, 1}));
  EXPECT_FLOAT_EQ(out[0].data<float>()[0], 0.5f);
  auto flat =
      OpTest("ReduceMax").inputs({f32({2, 3, 2}, ramp())}).attr("keepdims", 0).opset(13).run_ref();
  EXPECT_EQ(flat[0].shape(), Shape{});
  EXPECT_FLOAT_EQ(flat[0].data<float>()[0], 6.0f);
}

TEST(Reduce, SumAxesInputFromOpset13AndNoop) {
  auto out = OpTest("ReduceSum")
                 .inputs({f32({2, 3, 2}, ramp()), i64({2}, {0, 2})})
                 .attr("keepdims", 0)
                 .opset(13)
                 .run_ref();
  // Sum over i and k for each j: (j*2-5)+(j*2-4)+(j*2+1)+(j*2+2) = 8j - 6.
  EXPECT_LT(max_abs_diff(out[0], f32({3}, {-6, 2, 10})), 1e-6);
  auto noop = OpTest("ReduceSum")
                  .inputs({f32({2, 3, 2}, ramp()), i64({0}, {})})
                  .attr("noop_with_empty_axes", 1)
                  .opset(13)
                  .run_ref();
  EXPECT_EQ(max_abs_diff(noop[0], f32({2, 3, 2}, ramp())), 0);
  auto all = OpTest("ReduceSum").inputs({f32({2, 3, 2}, ramp()), i64({0}, {})}).opset(13).run_ref();
  EXPECT_FLOAT_EQ(all[0].data<float>()[0], 6.0f);
}

TEST(Reduce, IntegerTypes) {
  auto out = OpTest("ReduceSum")
                 .inputs({Tensor::from_vector<int32_t>(DataType::kInt32, {2, 2}, {1, 2, 3, 4})})
                 .attr("axes", {1})
                 .opset(11)
                 .run_ref();
  EXPECT_EQ(out[0].data<int32_t>()[0], 3);
  EXPECT_EQ(out[0].data<int32_t>()[1], 7);
  auto mx = OpTest("ReduceMax").inputs({i64({3}, {-7, -2, -9})}).opset(13).run_ref();
  EXPECT_EQ(mx[0].data<int64_t>()[0], -2);
}

TEST(ArgMax, AxisKeepdimsAndLastIndex) {
  Tensor x = f32({2, 3}, {1, 5, 5, 7, 2, 7});
  auto a = OpTest("ArgMax").input(x).attr("axis", 1).run_ref();
  EXPECT_EQ(a[0].shape(), (Shape{2, 1}));
  EXPECT_EQ(max_abs_diff(a[0], i64({2, 1}, {1, 0})), 0);
  auto last = OpTest("ArgMax")
                  .input(x)
                  .attr("axis", 1)
                  .attr("select_last_index", 1)
                  .attr("keepdims", 0)
                  .run_ref();
  EXPECT_EQ(max_abs_diff(last[0], i64({2}, {2, 2})), 0);
  auto mn = OpTest("ArgMin").input(x).attr("axis", -2).attr("keepdims", 0).run_ref();
  EXPECT_EQ(max_abs_diff(mn[0], i64({3}, {0, 1, 0})), 0);
}

TEST(Reduce, BadAxisThrows) {
  EXPECT_THROW(
      OpTest("ReduceSum").inputs({f32({2, 2}, {1, 2, 3, 4}), i64({1}, {2})}).opset(13).run_ref(),
      Error);
  EXPECT_THROW(OpTest("ArgMax").input(f32({2, 2}, {1, 2, 3, 4})).attr("axis", -3).run_ref(), Error);
}

}  // namespace
}  // namespace tandem

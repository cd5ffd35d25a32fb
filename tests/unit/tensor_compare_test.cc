// core/tensor_compare.h: the figures `tandem compare` prints and checks.
#include "core/tensor_compare.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace tandem {
namespace {

Tensor floats(Shape s, std::vector<float> v) {
  return Tensor::from_vector(DataType::kFloat32, std::move(s), v);
}

TEST(TensorCompare, IdenticalAndScaled) {
  const Tensor a = floats({4}, {1, -2, 3, 0.5f});
  TensorAgreement same = agreement(a, a);
  EXPECT_TRUE(same.mismatch.empty());
  EXPECT_EQ(same.count, 4);
  EXPECT_DOUBLE_EQ(same.cosine, 1.0);
  EXPECT_EQ(same.max_abs, 0.0);
  EXPECT_EQ(same.mean_rel, 0.0);
  // Twice the reference: the same direction (cosine 1) but every value off by itself.
  const TensorAgreement twice = agreement(floats({4}, {2, -4, 6, 1}), a);
  EXPECT_NEAR(twice.cosine, 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(twice.max_abs, 3.0);
  EXPECT_DOUBLE_EQ(twice.mean_rel, 1.0);
}

TEST(TensorCompare, OppositeAndOrthogonal) {
  EXPECT_NEAR(agreement(floats({2}, {-1, 0}), floats({2}, {1, 0})).cosine, -1.0, 1e-12);
  EXPECT_NEAR(agreement(floats({2}, {0, 1}), floats({2}, {1, 0})).cosine, 0.0, 1e-12);
  // Both zero agree; one zero vector against another vector does not.
  EXPECT_EQ(agreement(floats({2}, {0, 0}), floats({2}, {0, 0})).cosine, 1.0);
  EXPECT_EQ(agreement(floats({2}, {0, 0}), floats({2}, {1, 0})).cosine, 0.0);
}

TEST(TensorCompare, NanAndInfinityAreCountedApart) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(agreement(floats({3}, {nan, inf, 1}), floats({3}, {nan, inf, 1})).special_mismatches,
            0);
  const TensorAgreement a = agreement(floats({3}, {nan, -inf, 1}), floats({3}, {0, inf, 1}));
  EXPECT_EQ(a.special_mismatches, 2);
  EXPECT_EQ(a.max_abs, 0.0);  // the finite pair agrees
}

TEST(TensorCompare, DtypeAndShapeMismatchesAreNamed) {
  const Tensor a = floats({2}, {1, 2});
  EXPECT_NE(agreement(floats({1, 2}, {1, 2}), a).mismatch.find("shape"), std::string::npos);
  const Tensor i = Tensor::from_vector(DataType::kInt64, {2}, std::vector<int64_t>{1, 2});
  EXPECT_NE(agreement(i, a).mismatch.find("dtype int64"), std::string::npos);
  EXPECT_EQ(element_as_double(i, 1), 2.0);
}

}  // namespace
}  // namespace tandem

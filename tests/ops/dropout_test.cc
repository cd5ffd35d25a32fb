// Dropout: identity with an all-true mask at inference and in training with ratio 0; random
// training-mode dropout is refused.
#include <gtest/gtest.h>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"

namespace tandem {
namespace {

using testing::max_abs_diff;
using testing::OpTest;

TEST(Dropout, InferenceCopiesAndMasksTrue) {
  Tensor x = Tensor::from_vector(DataType::kFloat32, {2, 2}, std::vector<float>{1, -2, 3, 4});
  auto out = OpTest("Dropout").inputs({x}).outputs(2).opset(13).run_ref();
  EXPECT_EQ(max_abs_diff(out[0], x), 0);
  ASSERT_EQ(out[1].dtype(), DataType::kBool);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(out[1].data<bool>()[i]);
}

TEST(Dropout, TrainingWithZeroRatioIsIdentity) {
  Tensor x = Tensor::from_vector(DataType::kFloat32, {3}, std::vector<float>{1, 2, 3});
  Tensor ratio = Tensor::from_vector(DataType::kFloat32, {}, std::vector<float>{0});
  Tensor on = Tensor::from_vector(DataType::kBool, {}, std::vector<uint8_t>{1});
  auto out = OpTest("Dropout").inputs({x, ratio, on}).outputs(2).opset(13).run_ref();
  EXPECT_EQ(max_abs_diff(out[0], x), 0);
}

TEST(Dropout, RandomTrainingIsRefused) {
  Tensor x = Tensor::from_vector(DataType::kFloat32, {3}, std::vector<float>{1, 2, 3});
  Tensor ratio = Tensor::from_vector(DataType::kFloat32, {}, std::vector<float>{0.5f});
  Tensor on = Tensor::from_vector(DataType::kBool, {}, std::vector<uint8_t>{1});
  EXPECT_THROW(OpTest("Dropout").inputs({x, ratio, on}).outputs(2).opset(13).run_ref(), Error);
}

TEST(Dropout, Opset6TrainingDefaultIsRefused) {
  Tensor x = Tensor::from_vector(DataType::kFloat32, {3}, std::vector<float>{1, 2, 3});
  EXPECT_THROW(OpTest("Dropout").inputs({x}).outputs(2).opset(6).run_ref(), Error);
  auto out = OpTest("Dropout")
                 .inputs({x})
                 .attr("is_test", testing::attr_int(1))
                 .outputs(2)
                 .opset(6)
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], x), 0);
  EXPECT_EQ(out[1].dtype(), DataType::kFloat32);  // the mask had X's dtype before opset 10
}

}  // namespace
}  // namespace tandem

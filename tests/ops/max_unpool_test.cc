// MaxUnpool: values go to MaxPool's flat indices; an explicit larger output_shape keeps the
// unpooled coordinates.
#include <gtest/gtest.h>

#include <vector>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::attr_ints;
using testing::f32;
using testing::i64;
using testing::max_abs_diff;
using testing::OpTest;

TEST(MaxUnpool, DefaultAndExplicitShape) {
  std::map<std::string, Attribute> attrs = {{"kernel_shape", attr_ints({2, 2})},
                                            {"strides", attr_ints({2, 2})}};
  Tensor x = f32({1, 1, 1, 2}, {7, 9});
  Tensor idx = i64({1, 1, 1, 2}, {1, 6});  // (0,1) and (1,2) of the 2x4 unpooled plane
  auto out = OpTest("MaxUnpool").inputs({x, idx}).attrs(attrs).opset(11).run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({1, 1, 2, 4}, {0, 7, 0, 0, 0, 0, 9, 0})), 0);
  auto big =
      OpTest("MaxUnpool").inputs({x, idx, i64({4}, {1, 1, 3, 5})}).attrs(attrs).opset(11).run_ref();
  EXPECT_EQ(max_abs_diff(big[0], f32({1, 1, 3, 5}, {0, 7, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0})),
            0);
  EXPECT_THROW(
      OpTest("MaxUnpool").inputs({x, i64({1, 1, 1, 2}, {1, 8})}).attrs(attrs).opset(11).run_ref(),
      Error);
}

}  // namespace
}  // namespace tandem

// Opsets 1-6: ops whose old versions only add ignored attributes run; old forms with another
// meaning are refused.
#include <gtest/gtest.h>

#include <vector>

#include "op_test_util.h"
#include "tandem/status.h"
#include "tandem/tensor.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::f32;
using testing::max_abs_diff;
using testing::OpTest;

TEST(LegacyOpsets, SuffixBroadcastRuns) {
  auto out = OpTest("Add")
                 .inputs({f32({2, 2}, {1, 2, 3, 4}), f32({2}, {10, 20})})
                 .attr("broadcast", 1)
                 .attr("consumed_inputs", {0, 0})
                 .opset(1)
                 .run_ref();
  EXPECT_EQ(max_abs_diff(out[0], f32({2, 2}, {11, 22, 13, 24})), 0);
}

TEST(LegacyOpsets, DifferentMeaningsAreRefused) {
  // Legacy axis broadcasting runs (elementwise_test.cc), but B must fit inside A at `axis`.
  EXPECT_THROW(OpTest("Add")
                   .inputs({f32({2, 2}, {1, 2, 3, 4}), f32({3}, {10, 20, 30})})
                   .attr("broadcast", 1)
                   .attr("axis", 0)
                   .opset(6)
                   .run_ref(),
               Error);
  EXPECT_THROW(OpTest("Concat").inputs({f32({1}, {1}), f32({1}, {2})}).opset(3).run_ref(), Error);
  EXPECT_THROW(OpTest("BatchNormalization")
                   .inputs({f32({1, 1, 1, 1}, {1}), f32({1}, {1}), f32({1}, {0}), f32({1}, {0}),
                            f32({1}, {1})})
                   .opset(6)
                   .run_ref(),
               Error);
}

}  // namespace
}  // namespace tandem

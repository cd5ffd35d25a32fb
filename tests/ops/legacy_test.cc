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

using testing::attr_int;
using testing::attr_ints;
using testing::f32;
using testing::max_abs_diff;
using testing::run_ref_op;

TEST(LegacyOpsets, SuffixBroadcastRuns) {
  auto out = run_ref_op("Add", {f32({2, 2}, {1, 2, 3, 4}), f32({2}, {10, 20})},
                        {{"broadcast", attr_int(1)}, {"consumed_inputs", attr_ints({0, 0})}}, 1, 1);
  EXPECT_EQ(max_abs_diff(out[0], f32({2, 2}, {11, 22, 13, 24})), 0);
}

TEST(LegacyOpsets, DifferentMeaningsAreRefused) {
  // Legacy axis broadcasting runs (elementwise_test.cc), but B must fit inside A at `axis`.
  EXPECT_THROW(run_ref_op("Add", {f32({2, 2}, {1, 2, 3, 4}), f32({3}, {10, 20, 30})},
                          {{"broadcast", attr_int(1)}, {"axis", attr_int(0)}}, 1, 6),
               Error);
  EXPECT_THROW(run_ref_op("Concat", {f32({1}, {1}), f32({1}, {2})}, {}, 1, 3), Error);
  EXPECT_THROW(run_ref_op("BatchNormalization",
                          {f32({1, 1, 1, 1}, {1}), f32({1}, {1}), f32({1}, {0}), f32({1}, {0}),
                           f32({1}, {1})},
                          {}, 1, 6),
               Error);
}

}  // namespace
}  // namespace tandem

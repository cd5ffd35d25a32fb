// The harness itself can fail, and says which case failed: a fast backend built here whose
// kernels are wrong on purpose (an offset, an element left unwritten), a path other than the one
// expected, and a table that declares a kernel it never ran.
#include "fast_vs_ref.h"

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <span>

#include "backends/backend.h"
#include "backends/cpu/cpu_backend.h"
#include "op_test_util.h"
#include "test_tensors.h"

namespace tandem {
namespace {

using testing::Expect;
using testing::expect_fast_matches_ref;
using testing::f32;
using testing::FastTable;
using testing::FastTableRun;
using testing::OpTest;
using testing::Tolerance;

// Relu off by 1e-2; Sigmoid that writes nothing (its outputs stay NaN, as the harness fills them).
class BrokenBackend : public Backend {
 public:
  BrokenBackend() {
    kernels_.add("Relu", [](const KernelContext&, std::span<const Tensor* const> in,
                            std::span<Tensor* const> out) {
      for (int64_t i = 0; i < in[0]->numel(); ++i)
        out[0]->data<float>()[i] = std::max(in[0]->data<float>()[i], 0.0f) + 1e-2f;
    });
    kernels_.add("Sigmoid", [](const KernelContext&, std::span<const Tensor* const>,
                               std::span<Tensor* const>) {});
  }
  const char* name() const override { return "broken"; }
  const KernelRegistry& kernels() const override { return kernels_; }

 private:
  KernelRegistry kernels_;
};

const Tensor kX = f32({2, 3}, {-1, 0.5f, 2, -3, 4, 0.25f});

TEST(FastVsRef, AWrongResultNamesTheCase) {
  const BrokenBackend broken;
  EXPECT_NONFATAL_FAILURE(
      expect_fast_matches_ref(OpTest("Relu").attr("note", "x").opset(14).input(kX), broken),
      "case: Relu (opset 14) attrs {note=\"x\"} inputs [float32[2,3]] outputs 1");
  EXPECT_NONFATAL_FAILURE(expect_fast_matches_ref(OpTest("Relu").input(kX), broken),
                          "max |fast - ref| = 0.01");
  // The same kernel within a looser tolerance passes.
  expect_fast_matches_ref(OpTest("Relu").input(kX), broken, Tolerance::scaled(1e-2));
}

TEST(FastVsRef, AnUnwrittenOutputFails) {
  const BrokenBackend broken;
  EXPECT_NONFATAL_FAILURE(expect_fast_matches_ref(OpTest("Sigmoid").input(kX), broken),
                          "output 0: ");
}

TEST(FastVsRef, AnotherPathThanExpectedFails) {
  // The CPU backend takes a float32 Relu and declines a float64 one.
  EXPECT_NONFATAL_FAILURE(
      expect_fast_matches_ref(OpTest("Relu").input(kX), cpu_backend(), {}, Expect::declines()),
      "was expected to decline it but it chose to take it");
  const Tensor x64 = testing::f64({2}, {-1, 1});
  EXPECT_NONFATAL_FAILURE(expect_fast_matches_ref(OpTest("Relu").input(x64), cpu_backend()),
                          "was expected to take it but it chose to decline it");
  EXPECT_TRUE(
      expect_fast_matches_ref(OpTest("Relu").input(x64), cpu_backend(), {}, Expect::declines())
          .declined());
}

TEST(FastVsRef, ATableThatNeverRanItsKernelFails) {
  EXPECT_NONFATAL_FAILURE(
      {
        const FastTable table("FastVsRef.Unrun", {"Relu", "Tanh"});
        const FastTableRun run(table);
        expect_fast_matches_ref(OpTest("Relu").input(kX), cpu_backend());
      },
      "FastVsRef.Unrun declares that it covers Tanh, but no case of it ran on the fast kernel");
  // A case that fails does not count as covering its kernel.
  const BrokenBackend broken;
  EXPECT_NONFATAL_FAILURE(
      {
        const FastTable table("FastVsRef.Failing", {"Relu"});
        const FastTableRun run(table);
        EXPECT_NONFATAL_FAILURE(expect_fast_matches_ref(OpTest("Relu").input(kX), broken),
                                "max |fast - ref|");
      },
      "FastVsRef.Failing declares that it covers Relu");
}

}  // namespace
}  // namespace tandem

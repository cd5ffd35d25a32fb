// The fast-versus-reference harness: runs one OpTest on a fast backend and on the reference
// backend (the oracle) with the same inputs, compares every output, and checks which path the
// fast backend took (its own kernel, a declined node, or calls handed to the reference kernel),
// so a fast path that silently stops applying fails as surely as a wrong result. A failure names
// the op, its domain and opset, every attribute and every input's dtype and shape.
//
// Table tests are declared with TANDEM_FAST_TABLE_TEST, naming the fast kernels they cover:
//
//   TANDEM_FAST_TABLE_TEST(CpuVsRef, SoftmaxTable, {"Softmax", "LogSoftmax"}) {
//     expect_fast_matches_ref(OpTest("Softmax").attr("axis", 1).input(x), cpu_backend());
//   }
//
// The declaration is registered at static initialization (fast_tables()), where
// Registry.EveryFastKernelHasATableTest finds it without running anything; and the table test
// itself fails unless each op it declares was taken by the fast backend, compared and passed at
// least once while it ran, so a declaration cannot cover a kernel the table never exercises.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "op_test_util.h"

namespace tandem::testing {

// Per output: max |fast - ref| <= atol + rtol * max |ref|; or, for ops that only move data,
// the same bytes.
struct Tolerance {
  double atol = 1e-4;
  double rtol = 1e-4;
  bool bytes = false;
  // tol * (1 + max |ref|): the tables' usual form.
  static Tolerance scaled(double tol) { return {tol, tol, false}; }
  static Tolerance exact_bytes() { return {0, 0, true}; }
};

// What the fast backend is expected to do with the node.
struct Expect {
  enum class Path {
    kTakes,      // its kernel computes every call itself
    kDeclines,   // its factory returns nullptr: the reference backend runs the node
    kHandsOver,  // its kernel is made but hands every call to the reference kernel
  };
  Path path = Path::kTakes;
  static Expect takes() { return {Path::kTakes}; }
  static Expect declines() { return {Path::kDeclines}; }
  static Expect hands_over() { return {Path::kHandsOver}; }
  static Expect takes_or_declines(bool takes) { return takes ? Expect::takes() : declines(); }
  static Expect takes_or_hands_over(bool takes) { return takes ? Expect::takes() : hands_over(); }
};

// What happened on the fast backend.
struct FastRun {
  std::string backend;  // whose kernel was made: the fast backend's or "ref" (declined)
  int64_t handed = 0;   // compute calls its kernel handed to the reference kernel
  int64_t calls = 0;    // compute calls made
  bool declined() const;
};

// Runs `t` on `fast` (compute called max(2, t.repeats()) times, so cached plans and prepacked
// constants are used on the later calls) and on the reference backend, and compares every
// output that is not omitted. Failures are gtest failures that carry t.describe(); an exception
// from either run is reported the same way.
FastRun expect_fast_matches_ref(const OpTest& t, const Backend& fast, Tolerance tol = {},
                                Expect expect = Expect::takes());

// A table test's declaration: its name ("Suite.Name") and the fast kernels it covers, as
// OpTest::key() spells them ("Conv", "com.tandem:FusedConv").
class FastTable {
 public:
  FastTable(std::string name, std::vector<std::string> covers);
  ~FastTable();
  FastTable(const FastTable&) = delete;
  FastTable& operator=(const FastTable&) = delete;
  const std::string& name() const { return name_; }
  const std::vector<std::string>& covers() const { return covers_; }

 private:
  std::string name_;
  std::vector<std::string> covers_;
};
// Every declared table in this binary, in registration order.
const std::vector<const FastTable*>& fast_tables();

// While alive (the body of one table test), records the keys the fast backend took and passed;
// its destructor fails the test for each declared key that was not among them.
class FastTableRun {
 public:
  explicit FastTableRun(const FastTable& table);
  ~FastTableRun();
  FastTableRun(const FastTableRun&) = delete;
  FastTableRun& operator=(const FastTableRun&) = delete;

 private:
  const FastTable& table_;
};

}  // namespace tandem::testing

// TEST(suite, name) whose body runs under a FastTableRun for the table declared here; the
// variadic part is the braced list of covered keys.
#define TANDEM_FAST_TABLE_TEST(suite, name, ...)                                            \
  void suite##_##name##_body();                                                             \
  const ::tandem::testing::FastTable suite##_##name##_table(#suite "." #name, __VA_ARGS__); \
  TEST(suite, name) {                                                                       \
    ::tandem::testing::FastTableRun table_run(suite##_##name##_table);                      \
    suite##_##name##_body();                                                                \
  }                                                                                         \
  void suite##_##name##_body()

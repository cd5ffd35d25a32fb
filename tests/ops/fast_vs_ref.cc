#include "fast_vs_ref.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <set>
#include <sstream>

#include "backends/backend.h"
#include "backends/cpu/cpu_kernels.h"
#include "backends/ref/ref_backend.h"
#include "test_tensors.h"

namespace tandem::testing {

namespace {

// Calls the backend's kernels have handed to their reference kernels so far. Only the CPU
// backend counts them today; a new fast backend adds its counter here.
int64_t handed_so_far(const Backend& b) {
  return std::string(b.name()) == "cpu" ? cpu::reference_fallbacks() : 0;
}

std::vector<const FastTable*>& table_list() {
  static std::vector<const FastTable*> tables;
  return tables;
}

// The keys taken and passed while the current table test runs (none running: nullptr).
std::set<std::string>* g_taken = nullptr;

const char* path_name(Expect::Path p) {
  switch (p) {
    case Expect::Path::kTakes:
      return "to take it";
    case Expect::Path::kDeclines:
      return "to decline it";
    case Expect::Path::kHandsOver:
      return "to hand every call to the reference kernel";
  }
  return "?";
}

// Compares one output; returns the failure message, or "" when it matches.
std::string compare_output(const Tensor& fast, const Tensor& ref, const Tolerance& tol) {
  std::ostringstream os;
  if (fast.defined() != ref.defined())
    return fast.defined() ? "only the fast backend wrote it" : "the fast backend did not write it";
  if (!ref.defined()) return "";
  if (fast.dtype() != ref.dtype() || fast.shape() != ref.shape()) {
    os << "fast " << dtype_name(fast.dtype()) << shape_str(fast.shape()) << " vs ref "
       << dtype_name(ref.dtype()) << shape_str(ref.shape());
    return os.str();
  }
  if (tol.bytes) {
    if (fast.nbytes() != ref.nbytes() ||
        (ref.nbytes() && std::memcmp(fast.raw(), ref.raw(), ref.nbytes()) != 0))
      return "bytes differ (an exact comparison)";
    return "";
  }
  const double diff = max_abs_diff(fast, ref), scale = max_abs(ref);
  const double bound = tol.atol + tol.rtol * scale;
  if (diff <= bound) return "";
  os << "max |fast - ref| = " << diff << " > " << bound << " (atol " << tol.atol << " + rtol "
     << tol.rtol << " * max |ref| " << scale << ")";
  return os.str();
}

}  // namespace

bool FastRun::declined() const {
  return backend == reference_backend().name();
}

FastRun expect_fast_matches_ref(const OpTest& t, const Backend& fast, Tolerance tol,
                                Expect expect) {
  const std::string what = t.describe();
  FastRun result;
  OpTest fast_test = t;
  fast_test.repeats(std::max(2, t.repeats()));
  result.calls = fast_test.repeats();
  OpRun fast_run;
  std::vector<Tensor> ref;
  try {
    const int64_t before = handed_so_far(fast);
    fast_run = fast_test.run(fast);
    result.handed = handed_so_far(fast) - before;
    if (fast_run.in_place_input >= 0) ++result.calls;  // the in-place call run() added
    ref = t.run_ref();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw: " << e.what() << "\n  case: " << what;
    return result;
  }
  result.backend = fast_run.backend;

  // The path taken.
  Expect::Path path = Expect::Path::kTakes;
  if (result.declined())
    path = Expect::Path::kDeclines;
  else if (result.handed == result.calls)
    path = Expect::Path::kHandsOver;
  else if (result.handed != 0)
    ADD_FAILURE() << fast.name() << " handed " << result.handed << " of " << result.calls
                  << " calls to the reference kernel (all or none expected)\n  case: " << what;
  const bool path_ok = path == expect.path;
  EXPECT_TRUE(path_ok) << fast.name() << " was expected " << path_name(expect.path)
                       << " but it chose " << path_name(path) << "\n  case: " << what;

  bool outputs_ok = fast_run.outputs.size() == ref.size();
  EXPECT_TRUE(outputs_ok) << fast_run.outputs.size() << " outputs from " << fast.name() << ", "
                          << ref.size() << " from the reference\n  case: " << what;
  for (size_t i = 0; outputs_ok && i < ref.size(); ++i) {
    std::string why;
    try {
      why = compare_output(fast_run.outputs[i], ref[i], tol);
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (!why.empty()) {
      ADD_FAILURE() << "output " << i << ": " << why << "\n  case: " << what;
      outputs_ok = false;
    }
  }
  // The same again with output 0 over the bytes of the input the kernel offered to share, as the
  // planner would run it: a kernel that says yes must not read what it has already written.
  if (outputs_ok && fast_run.in_place_input >= 0 && !ref.empty()) {
    std::string why;
    try {
      why = compare_output(fast_run.in_place_outputs.at(0), ref[0], tol);
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (!why.empty()) {
      ADD_FAILURE() << "output 0 written over input " << fast_run.in_place_input
                    << " (the kernel's in_place_input): " << why << "\n  case: " << what;
      outputs_ok = false;
    }
  }
  if (g_taken && path_ok && outputs_ok && path == Expect::Path::kTakes) g_taken->insert(t.key());
  return result;
}

FastTable::FastTable(std::string name, std::vector<std::string> covers)
    : name_(std::move(name)), covers_(std::move(covers)) {
  table_list().push_back(this);
}

FastTable::~FastTable() {
  std::erase(table_list(), this);
}

const std::vector<const FastTable*>& fast_tables() {
  return table_list();
}

FastTableRun::FastTableRun(const FastTable& table) : table_(table) {
  static std::set<std::string> taken;
  taken.clear();
  g_taken = &taken;
}

FastTableRun::~FastTableRun() {
  for (const std::string& key : table_.covers())
    if (!g_taken->count(key))
      ADD_FAILURE() << table_.name() << " declares that it covers " << key
                    << ", but no case of it ran on the fast kernel and passed";
  g_taken = nullptr;
}

}  // namespace tandem::testing

// How OpenMP threads (Tandem's loops and oneDNN's) wait between parallel regions, decided here
// for every Tandem process.
//
// libgomp's threads spin after each region, by default for 300,000 rounds, then sleep. On a quiet
// machine spinning saves the wake-up of the next region; on a machine whose cores are busy with
// other work, a spinning thread takes CPU time from the thread the region waits for, and regions
// stall for scheduler ticks: the flagship at --threads 2 next to two busy loops took over a second
// per run. Measured on a 2-core machine (flagship, 2 threads, quiet / next to two busy loops):
// default 10.2 ms / >1 s; spinning 3,000 rounds 10.5 / 40 ms; not at all
// (OMP_WAIT_POLICY=PASSIVE) 16.4 / 19 ms; ONNX Runtime 13.5 / 42. So Tandem's policy is a short
// spin: GOMP_SPINCOUNT=3000.
//
// libgomp reads its variables once, when it loads, so the policy is applied from outside:
//  - the `tandem` binary starts itself again with the variable set (cli/main.cc);
//  - the Python package sets it before it loads its extension (python/tandem/__init__.py);
//  - worker processes of a ParallelPredictor get it in their environment (parallel/spawn.cc).
// A choice of the user's (OMP_WAIT_POLICY or GOMP_SPINCOUNT set) is kept everywhere. Note that
// libgomp lets GOMP_SPINCOUNT override OMP_WAIT_POLICY, so setting both means the spin count.
#pragma once

namespace tandem {

inline constexpr const char* kOpenMpSpinCountVariable = "GOMP_SPINCOUNT";
inline constexpr const char* kOpenMpSpinCount = "3000";

// Whether `env` (a null-terminated environ-style list) already says how OpenMP threads wait.
bool openmp_wait_is_set(const char* const* env);

}  // namespace tandem

// `tandem`: one binary, one subcommand per job. Every failure ends in one "error: ..." line on
// stderr and a non-zero exit status (1 for errors, 2 for usage mistakes).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "cli/cli_common.h"
#include "tandem/status.h"

namespace {

// OpenMP threads (Tandem's loops and oneDNN's) spin after each parallel region by default. On a
// machine whose cores are also busy with other work, a spinning thread takes CPU time from the
// thread the region is waiting for, and every region can stall for scheduler ticks: the flagship
// at --threads 2 measured 1.5 s instead of 18 ms next to two compilers. Threads that sleep at once
// (OMP_WAIT_POLICY=PASSIVE) cost a few microseconds per region instead. libgomp reads the variable
// when it loads, before main, so the process starts itself again with it set (once: the variable
// is then present). Setting OMP_WAIT_POLICY yourself, to anything, keeps your choice.
void prefer_passive_openmp_threads(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY")) return;
  if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
}

}  // namespace

int main(int argc, char** argv) {
  prefer_passive_openmp_threads(argv);
  CLI::App app{"Tandem: run ONNX models on one or many devices."};
  app.require_subcommand(1);
  int exit_code = 0;
  tandem::cli::add_run_command(app, exit_code);
  tandem::cli::add_check_command(app, exit_code);
  tandem::cli::add_info_command(app, exit_code);
  tandem::cli::add_bench_command(app, exit_code);
  tandem::cli::add_worker_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const tandem::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return exit_code;
}

// `tandem`: one binary, one subcommand per job. Every failure ends in one "error: ..." line on
// stderr and a non-zero exit status (1 for errors, 2 for usage mistakes).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli/cli_common.h"
#include "tandem/status.h"

namespace {

// OpenMP threads (Tandem's loops and oneDNN's) spin after each parallel region, by default for
// 300,000 rounds (libgomp), then sleep. On a quiet machine spinning saves the wake-up of the next
// region; on a machine whose cores are busy with other work, a spinning thread takes CPU time from
// the thread the region waits for, and regions stall for scheduler ticks: the flagship at
// --threads 2 next to two busy loops took over a second per run. Measured on this 2-core machine
// (flagship, 2 threads, quiet / next to two busy loops): default 10.2 ms / >1 s; spinning 3,000
// rounds 10.5 / 40 ms; not at all (OMP_WAIT_POLICY=PASSIVE) 16.4 / 19 ms; ONNX Runtime 13.5 / 42.
// So the default here is a short spin. libgomp reads its variables when it loads, before main, so
// the process starts itself again with GOMP_SPINCOUNT set (once: the variable is then present).
// Setting OMP_WAIT_POLICY or GOMP_SPINCOUNT yourself keeps your choice.
void prefer_short_openmp_spin(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", "3000", 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
}

// CLI11's usage errors as one "error: ..." line like every other failure. A range check's message
// comes as "--batch: must be at least 1 (got 0)"; it reads as one sentence without the colon.
std::string usage_error_line(const CLI::App*, const CLI::Error& e) {
  std::string message = e.what();
  if (auto colon = message.find(": must "); colon != std::string::npos) message.erase(colon, 1);
  return "error: " + message + " (see --help)\n";
}

}  // namespace

int main(int argc, char** argv) {
  prefer_short_openmp_spin(argv);
  CLI::App app{"Tandem: run ONNX models on one or many devices."};
  app.require_subcommand(1);
  app.failure_message(usage_error_line);
  // TANDEM_VERSION is CMake's project VERSION, defined for this file only.
  app.set_version_flag("--version", "tandem " TANDEM_VERSION, "print the version and exit");
  app.add_subcommand("version", "Print the version.")->callback([] {
    std::printf("tandem %s\n", TANDEM_VERSION);
  });
  int exit_code = 0;
  tandem::cli::add_run_command(app, exit_code);
  tandem::cli::add_check_command(app, exit_code);
  tandem::cli::add_info_command(app, exit_code);
  tandem::cli::add_bench_command(app, exit_code);
  tandem::cli::add_serve_command(app, exit_code);
  tandem::cli::add_worker_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
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

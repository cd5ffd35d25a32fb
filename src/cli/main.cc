// `tandem`: one binary, one subcommand per job. Every failure ends in one "error: ..." line on
// stderr and a non-zero exit status (1 for errors, 2 for usage mistakes).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli/cli_common.h"
#include "core/openmp_wait.h"
#include "tandem/status.h"

namespace {

// Tandem's OpenMP wait policy (core/openmp_wait.h). libgomp reads its variables when it loads,
// before main, so the process starts itself again with the variable set (once: it is then
// present). A choice of the user's is kept.
void prefer_short_openmp_spin(char** argv) {
  if (tandem::openmp_wait_is_set(environ)) return;
  if (setenv(tandem::kOpenMpSpinCountVariable, tandem::kOpenMpSpinCount, 1) != 0) return;
  execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
}

// CLI11's usage errors as one "error: ..." line like every other failure. A range check's message
// comes as "--batch: must be at least 1 (got 0)"; it reads as one sentence without the colon.
std::string usage_error_line(const CLI::App*, const CLI::Error& e) {
  std::string message = e.what();
  if (auto colon = message.find(": must "); colon != std::string::npos) message.erase(colon, 1);
  return "error: " + message + " (see --help)\n";
}

// The one "error: ..." line, after what the command printed so far (stdout is flushed first, so
// with 2>&1 the error comes last, where it happened).
int fail(const char* message) {
  std::fflush(stdout);
  std::fprintf(stderr, "error: %s\n", message);
  return 1;
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
  tandem::cli::add_compare_command(app, exit_code);
  tandem::cli::add_convert_command(app, exit_code);
  tandem::cli::add_map_command(app, exit_code);
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
    return fail(e.what());
  } catch (const std::bad_alloc&) {
    return fail("out of memory");
  } catch (const std::exception& e) {
    return fail(e.what());
  }
  return exit_code;
}

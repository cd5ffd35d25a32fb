// `tandem`: one binary, one subcommand per job. Every failure ends in one "error: ..." line on
// stderr and a non-zero exit status (1 for errors, 2 for usage mistakes).
#include <cstdio>

#include "cli/cli_common.h"
#include "tandem/status.h"

int main(int argc, char** argv) {
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

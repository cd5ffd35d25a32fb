// tandem worker: the process the parallel runner starts for each device. Not for direct use.
#include "cli/cli_common.h"
#include "parallel/device.h"
#include "parallel/worker.h"

namespace tandem::cli {

void add_worker_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<parallel::WorkerArgs>();
  auto cores = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "worker", "(internal) serve one device for the parallel runner over an inherited socket");
  cmd->group("Internal");
  cmd->add_option("--fd", args->socket_fd, "inherited SOCK_SEQPACKET socket")->required();
  cmd->add_option("--model", args->model, "ONNX model file")->required();
  cmd->add_option("--source", args->source,
                  "the model file --model was converted from (for messages)");
  cmd->add_option("--device", args->device, "device name, e.g. cpu:0");
  cmd->add_option("--cores", *cores, "cores to pin to, e.g. 0-3");
  cmd->add_option("--threads", args->threads, "intra-op threads");
  cmd->add_option("--input-shape", args->input_shape, "fixed input shapes");
  cmd->add_option("--index", args->index, "worker index");
  cmd->add_option("--parent-pid", args->parent_pid, "exit at once if the parent is not this pid");
  cmd->add_option("--model-digest", args->model_digest,
                  "content digest the model file must have (as the parent read it)");
  cmd->add_flag("--verbose", args->verbose, "print the seed's exit line");
  cmd->add_flag("--checksum-verified", args->checksum_verified,
                "the parent checked the .tandem model's checksum: do not read it all again");
  args->max_tensor_bytes = Context{}.max_tensor_bytes;
  args->max_model_bytes = Context{}.max_model_bytes;
  add_size_cap_options(cmd, &args->max_tensor_bytes, &args->max_model_bytes);
  cmd->callback([args, cores, &exit_code] {
    if (!cores->empty()) args->cores = parallel::parse_core_list(*cores);
    exit_code = parallel::run_worker(*args);
  });
}

}  // namespace tandem::cli

// The worker side of the parallel runner: `tandem worker` builds the model for its device,
// answers BUILD_FINISH (or ERROR), then serves PREDICT / SHAPES until EXIT or until the parent
// goes away.
#pragma once

#include <string>
#include <vector>

namespace tandem::parallel {

struct WorkerArgs {
  int socket_fd = 3;
  std::string model;
  // The file the model came from when `model` is the parent's converted copy
  // (/proc/<pid>/fd/<n>): named in messages, and visible in `ps`.
  std::string source;
  std::string device = "cpu";
  std::vector<int> cores;
  int threads = 1;
  std::string input_shape;  // "name:d0,d1;..." as on the command line
  int index = 0;
  int parent_pid = 0;
  // file_digest() of the model as the parent read it at build(): the worker refuses to serve
  // another file's bytes (the file replaced after build(), then this worker restarted).
  std::string model_digest;
  bool verbose = false;
  bool checksum_verified = false;  // the parent checked the .tandem file's checksum
  size_t max_tensor_bytes = 0;     // Context's size caps (0: no limit)
  size_t max_model_bytes = 0;
};

// Returns the process exit status.
int run_worker(const WorkerArgs& args);

}  // namespace tandem::parallel

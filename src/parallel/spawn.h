// Starting and ending worker processes: the `tandem worker` command line, the socket pair, the
// pidfd, and the one long-lived thread every worker is spawned from.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "parallel/unique_fd.h"

namespace tandem::parallel {

// The `tandem` binary that runs workers: `configured` when given (it must exist), else
// $TANDEM_WORKER_BINARY, `tandem` beside this executable, the one this library was built with.
std::string find_worker_binary(const std::string& configured);

struct WorkerProcess {
  pid_t pid = -1;
  UniqueFd sock;   // the parent's end of the SOCK_SEQPACKET pair
  UniqueFd pidfd;  // invalid on kernels without pidfd_open: the socket's EOF still tells
};

// Starts `argv` (argv[0] the binary) with the child's end of a new socket pair as fd 3.
WorkerProcess spawn_process(const std::vector<std::string>& argv);

// Waits for (and, if still running, SIGKILLs) `pid`; returns how it ended ("exited with status
// 1", "killed by signal 9 (Killed)") or "gone".
std::string reap_process(pid_t pid);

// Whether `pid` is stopped by a signal (state 'T' in /proc/<pid>/stat): SIGSTOP, SIGTSTP. A
// traced stop ('t', a debugger) does not count.
bool process_stopped(pid_t pid);

// Runs every spawn on one thread that lives as long as the predictor. Workers die with the
// *thread* that spawned them (PR_SET_PDEATHSIG follows the spawning thread, not the process), so
// spawning from build()'s caller — say a short-lived Python thread — would lose every worker
// when that thread ends.
class Spawner {
 public:
  Spawner();
  ~Spawner();
  Spawner(const Spawner&) = delete;
  Spawner& operator=(const Spawner&) = delete;
  // Runs `fn` on the spawner thread and waits for it; its exception is rethrown here.
  void run(const std::function<void()>& fn);

 private:
  void loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tandem::parallel

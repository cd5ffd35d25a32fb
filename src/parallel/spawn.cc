#include "parallel/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>

#include "core/error.h"
#include "core/openmp_wait.h"

extern char** environ;

namespace tandem::parallel {

std::string find_worker_binary(const std::string& configured) {
  namespace fs = std::filesystem;
  if (!configured.empty()) {
    // A path the caller names is the one to use: no silent fallback.
    TANDEM_CHECK(::access(configured.c_str(), X_OK) == 0, ErrorCode::kNotFound,
                 "worker binary '{}' does not exist or is not executable", configured);
    return configured;
  }
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("TANDEM_WORKER_BINARY")) candidates.push_back(env);
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back((self.parent_path() / "tandem").string());
#ifdef TANDEM_DEFAULT_WORKER_BINARY
  candidates.push_back(TANDEM_DEFAULT_WORKER_BINARY);
#endif
  for (const auto& c : candidates)
    if (::access(c.c_str(), X_OK) == 0) return c;
  raise(ErrorCode::kNotFound,
        "cannot find the `tandem` binary that runs workers (tried: {}); set "
        "ParallelOptions::worker_binary or TANDEM_WORKER_BINARY",
        fmt::join(candidates, ", "));
}

WorkerProcess spawn_process(const std::vector<std::string>& args) {
  int sv[2];
  TANDEM_CHECK(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0,
               ErrorCode::kRuntime, "socketpair failed: {}", std::strerror(errno));
  UniqueFd parent_end(sv[0]);
  // The child's end must not already be fd 3 (dup2 onto itself would keep CLOEXEC).
  UniqueFd child_end(::fcntl(sv[1], F_DUPFD_CLOEXEC, 10));
  ::close(sv[1]);
  TANDEM_CHECK(child_end, ErrorCode::kRuntime, "fcntl(F_DUPFD) failed: {}", std::strerror(errno));

  std::vector<std::string> argv_strings = args;
  std::vector<char*> argv;
  for (auto& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Workers run under Tandem's OpenMP wait policy (core/openmp_wait.h) whatever started this
  // process; libgomp reads it only at start-up, so it goes into the environment. A choice of the
  // user's is inherited and kept.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  if (!openmp_wait_is_set(environ))
    env_strings.push_back(fmt::format("{}={}", kOpenMpSpinCountVariable, kOpenMpSpinCount));
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, child_end.get(), 3);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  TANDEM_CHECK(rc == 0, ErrorCode::kRuntime, "cannot start worker '{}': {}", args[0],
               std::strerror(rc));
  WorkerProcess p;
  p.pid = pid;
  p.sock = std::move(parent_end);
  p.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  return p;
}

namespace {
std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    return fmt::format("killed by signal {} ({})", sig, strsignal(sig));
  }
  return "ended";
}
}  // namespace

std::string reap_process(pid_t pid) {
  if (pid <= 0) return "gone";
  int status = 0;
  pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == 0) {
    ::kill(pid, SIGKILL);
    do {
      r = ::waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
  }
  return r == pid ? describe_status(status) : "gone";
}

bool process_stopped(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // "pid (comm) S ...": comm may hold spaces and parentheses, so look after the last ')'.
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'T';
}

Spawner::Spawner() : thread_([this] { loop(); }) {}

Spawner::~Spawner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Spawner::run(const std::function<void()>& fn) {
  std::packaged_task<void()> task(fn);
  std::future<void> done = task.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.emplace_back([&task] { task(); });
  }
  cv_.notify_all();
  done.get();
}

void Spawner::loop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace tandem::parallel

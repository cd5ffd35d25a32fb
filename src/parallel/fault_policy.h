// When a dead worker is started again. A lifetime restart count made a long-running predictor
// give up for good after a handful of crashes spread over hours; this is a rate limit instead:
//  - restarts within `restart_window` back off exponentially (the first at once, then
//    restart_backoff, doubling, capped at kMaxRestartBackoff), so a crash loop does not spin;
//  - more than `max_restarts` within the window marks the device down;
//  - a down device is probed (a rebuild attempt) after `probe_interval`, doubling after each
//    failed probe up to `max_probe_interval`; a probe that builds brings it back, with a fresh
//    window.
// Pure bookkeeping on times given by the caller, shared by whatever engine restarts workers.
#pragma once

#include <chrono>
#include <deque>
#include <optional>

namespace tandem::parallel {

struct FaultPolicyOptions {
  int max_restarts = 10;
  std::chrono::milliseconds restart_window{std::chrono::seconds(60)};
  std::chrono::milliseconds restart_backoff{std::chrono::milliseconds(100)};
  std::chrono::milliseconds probe_interval{std::chrono::seconds(5)};
  std::chrono::milliseconds max_probe_interval{std::chrono::seconds(300)};
};

inline constexpr std::chrono::milliseconds kMaxRestartBackoff{std::chrono::seconds(5)};

class RestartPolicy {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RestartPolicy(FaultPolicyOptions o = {}) : o_(o) {}

  // A worker died (or failed to rebuild) at `now`; returns when to start it again. Sets down()
  // when the rate limit is exceeded (then the time returned is the next probe).
  Clock::time_point on_death(Clock::time_point now);
  // The worker built and is serving: a probe succeeded, the device is up again.
  void on_built();

  bool down() const { return down_; }
  int total_restarts() const { return total_; }
  int restarts_in_window(Clock::time_point now);
  std::optional<Clock::time_point> next_start() const { return next_start_; }
  void clear_next_start() { next_start_.reset(); }

 private:
  void prune(Clock::time_point now);
  FaultPolicyOptions o_;
  std::deque<Clock::time_point> recent_;
  int total_ = 0;
  bool down_ = false;
  bool probing_ = false;
  std::chrono::milliseconds probe_wait_{0};
  std::optional<Clock::time_point> next_start_;
};

}  // namespace tandem::parallel
